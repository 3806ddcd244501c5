"""How the review commands write values and tables: one formatter for every text and Markdown
table (top table, status, report, compare), so they agree on yes/no, digits and dashes."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """``-`` for nothing, ``yes``/``no`` for booleans, ``digits`` decimals (or 3 significant
    digits below 1e-3) for floats, ``str`` for the rest."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return str(value)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns under a dashed rule."""
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def group_label(group: dict[str, Any]) -> str:
    """``sgd``, or ``sgd resnet56 plain`` where depths or shortcuts differ in the study."""
    parts = [group["optimizer"], group.get("model")]
    if group["residual"] is not None:
        parts.append("residual" if group["residual"] else "plain")
    return " ".join(p for p in parts if p)


def pm(mean: float | None, half: float | None) -> str:
    """A mean and the half width of its interval, ``0.9812 +/- 0.0031`` (``-`` for none)."""
    if mean is None:
        return "-"
    return f"{mean:.4f}" + (f" +/- {half:.4f}" if half is not None else "")
