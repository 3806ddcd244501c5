"""``hpo compare``: the factor tables and the gradient flow of several studies side by side.

Rows are the union of the levels the studies tried (an optimizer one study never tried shows
``-``), so ResNet-20 and ResNet-56, or CIFAR-10 and CIFAR-100, line up on shared dimensions.
Head-to-head studies add their head-to-head tables, one study after the other, each with its
verdict.
"""

from __future__ import annotations

from typing import Any

from hpo.errors import UserError
from hpo.review._evidence import AXES
from hpo.review._format import fmt, group_label, markdown_table, text_table
from hpo.review.sections._headtohead import tables as h2h_tables


def compare_tables(reports: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per axis: (title, headers, rows) with one 'best / median (trials)' column per study."""
    names = [r["study"] for r in reports]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"hpo compare: study {twice[0]!r} is named twice; name each study once")
    out = []
    for axis in AXES:
        levels = sorted({lvl for r in reports for lvl in r["factors"][axis]})
        headers = [axis] + [r["study"] for r in reports]
        rows = []
        for lvl in levels:
            row = [lvl]
            for r in reports:
                s = r["factors"][axis].get(lvl)
                row.append("-" if s is None else
                           f"{fmt(s['best'])} / {fmt(s['median'])} ({s['trials']})")
            rows.append(row)
        out.append((f"By {axis.replace('_', ' ')}: best / median (finished trials)",
                    headers, rows))
    groups = {r["study"]: {group_label(g): g for g in r["gradient_flow"]["groups"]}
              for r in reports}
    labels = sorted({label for by in groups.values() for label in by})
    rows = [[label, *("-" if label not in groups[r["study"]] else _flow(groups[r["study"]][label])
                      for r in reports)] for label in labels]
    out.append(("Gradient flow: stem / last stage ratio at epoch 1 -> last epoch (flagged "
                "vanishing or exploding)", ["optimizer", *groups], rows))
    for r in reports:
        if r.get("head_to_head"):
            out += [(f"{r['study']}: {title}", headers, rows)
                    for title, (headers, rows) in h2h_tables(r["head_to_head"], r["metric"])]
    return out


def _flow(group: dict[str, Any]) -> str:
    return (f"{group['ratio_first']:.3g} -> {group['ratio_last']:.3g} "
            f"({100 * group['flagged']:.0f} %)")


def compare_text(reports: list[dict[str, Any]], markdown: bool = False) -> str:
    parts = []
    head = ", ".join(f"{r['study']} (best {fmt(r['best']['value'])}, {r['metric']})"
                     for r in reports)
    parts.append(f"# Comparing {head}" if markdown else f"Comparing {head}")
    parts += [f"{r['study']}: {r['verdict']}" for r in reports if r.get("head_to_head")]
    for title, headers, rows in compare_tables(reports):
        if markdown:
            parts.append(f"## {title}\n\n{markdown_table(headers, rows)}")
        else:
            parts.append(f"{title}\n{text_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"
