"""Renders a report dictionary (see :mod:`hpo.review._report`) as text, Markdown or HTML.

Text and Markdown share one list of sections (title + table); HTML adds plotly figures and is
one self-contained file (plotly.js inlined once), with PNG versions of the figures (matplotlib)
in a folder beside it, for papers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import optuna

Table = tuple[list[str], list[list[str]]]


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)


def sections(r: dict[str, Any]) -> list[tuple[str, Table]]:
    """The report as titled tables, in reading order."""
    out: list[tuple[str, Table]] = []
    counts = r["n_trials"]
    out.append(("Trials", (list(counts), [[str(v) for v in counts.values()]])))
    rows = []
    for i, t in enumerate(r["top"], 1):
        c = t["config"]
        rows.append([str(i), str(t["trial_number"]), _f(t["value"]), _f(t["epochs"]),
                     _f(t["wall_time_s"], 1), c.get("optimizer", "-"),
                     f"{c.get('lr', 0):.3g}", f"{c.get('weight_decay', 0):.3g}",
                     c.get("schedule", "-"), c.get("init", "-"),
                     _f(c.get("zero_init_residual")), _f(c.get("no_decay_bn_bias"))])
    out.append((f"Top {len(r['top'])} configurations ({r['metric']})",
                (["#", "trial", r["metric"], "epochs", "wall s", "optimizer", "lr", "wd",
                  "schedule", "init", "zero_init", "no_decay_bn"], rows)))
    for axis in ("optimizer", "schedule", "init", "weight_decay_band"):
        rows = [[level, str(s["trials"]), str(s["complete"]), _f(s["best"]), _f(s["median"]),
                 _f(s["top_quartile_mean"])] for level, s in r["factors"][axis].items()]
        out.append((f"By {axis.replace('_', ' ')}",
                    ([axis, "trials", "complete", "best", "median", "top-quartile mean"], rows)))
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    grid = [[o, *(_f(row.get(s)) for s in schedules)] for o, row in sorted(matrix.items())]
    out.append((f"Best {r['metric']}: optimizer x schedule", (["optimizer", *schedules], grid)))
    if r["importances"]:
        out.append(("Parameter importances", (["parameter", "importance"],
                    [[k, _f(v, 3)] for k, v in r["importances"].items()])))
    comp = r["compute"]
    out.append(("Compute", (["outcome", "trials", "epochs", "device-hours"],
                            [[k, str(comp[k]["trials"]), str(comp[k]["epochs"]),
                              _f(comp[k]["device_hours"], 4)]
                             for k in ("complete", "pruned", "failed", "retried")])))
    p = comp["pruning"]
    out.append(("Pruning", (["epochs if every trial ran fully", "epochs run", "saved",
                             "share saved"],
                            [[str(p["full_epochs"]), str(p["epochs_run"]), str(p["saved_epochs"]),
                              f"{100 * p['saved_share']:.1f} %"]])))
    out.append(("Learning curves of the top trials", (["trial", f"{r['metric']} per epoch"], [
        [str(t["trial_number"]), " ".join(_f(v, 3) for v in t["curve"])] for t in r["top"]])))
    reps = r["replicates"]
    if reps["configs"]:
        rows = [[str(c["trial_number"]), str(c["n"]), _pm(c["val_mean"], c["val_ci95"]),
                 _pm(c["test_mean"], c["test_ci95"])] for c in reps["configs"]]
        verdict = {True: "yes", False: "no", None: "needs 2+ seeds for both"}[
            reps["leader_separated"]]
        out.append((f"Replicates (mean +/- 95% CI); leader separated from runner-up: {verdict}",
                    (["trial", "seeds", r["metric"], "test accuracy"], rows)))
    return out


def _pm(mean: float | None, half: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" + (f" +/- {half:.4f}" if half is not None else "")


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def _head(r: dict[str, Any]) -> str:
    return (f"study {r['study']} ({r['storage']}): {r['metric']}, {r['direction']}; best "
            f"{_f(r['best']['value'])} (trial {r['best']['trial_number']})")


def to_text(r: dict[str, Any]) -> str:
    parts = [_head(r)]
    for title, (headers, rows) in sections(r):
        parts.append(f"\n{title}\n" + _text_table(headers, rows))
    return "\n".join(parts) + "\n"


def to_markdown(r: dict[str, Any]) -> str:
    parts = [f"# Study `{r['study']}`\n\n{_head(r)}"]
    for title, (headers, rows) in sections(r):
        table = "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
        table += "\n".join("| " + " | ".join(row) + " |" for row in rows)
        parts.append(f"## {title}\n\n{table}")
    return "\n\n".join(parts) + "\n"


def to_json(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2, sort_keys=False) + "\n"


def to_html(r: dict[str, Any], study: optuna.Study, out: Path | None) -> str:
    """One self-contained page; PNG figures go to ``<out stem>_figures/`` when ``out`` is set."""
    figures = _figures(r, study)
    parts = [f"<h1>Study {html.escape(r['study'])}</h1><p>{html.escape(_head(r))}</p>"]
    for i, (title, fig) in enumerate(figures):
        js = "inline" if i == 0 else False
        parts.append(f"<h2>{html.escape(title)}</h2>" +
                     fig.to_html(full_html=False, include_plotlyjs=js))
    for title, (headers, rows) in sections(r):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    if out is not None:
        _pngs(r, out.parent / f"{out.stem}_figures")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hpo report: "
            f"{html.escape(r['study'])}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _figures(r: dict[str, Any], study: optuna.Study) -> list[tuple[str, Any]]:
    import warnings

    import plotly.graph_objects as go
    from optuna import visualization as vis

    complete = [t for t in study.get_trials(deepcopy=False)
                if "replicate_of" not in t.user_attrs]
    figs: list[tuple[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = optuna.create_study(direction=study.direction)
        sub.add_trials(complete)
        figs.append(("Optimization history", vis.plot_optimization_history(sub)))
        figs.append(("Intermediate values", vis.plot_intermediate_values(sub)))
        figs.append(("Parallel coordinates", vis.plot_parallel_coordinate(
            sub, params=[p for p in ("optimizer", "schedule", "init") if any(
                p in t.params for t in complete)] or None)))
    if r["importances"]:
        imp = r["importances"]
        figs.append(("Parameter importances", go.Figure(go.Bar(
            x=list(imp.values()), y=list(imp), orientation="h"))))
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    optimizers = sorted(matrix)
    figs.append((f"Best {r['metric']}: optimizer x schedule", go.Figure(go.Heatmap(
        z=[[matrix[o].get(s) for s in schedules] for o in optimizers], x=schedules,
        y=optimizers, colorscale="Viridis", texttemplate="%{z:.4f}"))))
    return figs


def _pngs(r: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    for t in r["top"]:
        ax.plot(range(1, len(t["curve"]) + 1), t["curve"], marker=".",
                label=f"trial {t['trial_number']} ({t['config'].get('optimizer')})")
    ax.set(xlabel="epoch", ylabel=r["metric"], title="Top trials")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "curves.png")
    plt.close(fig)
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    optimizers = sorted(matrix)
    grid = [[matrix[o].get(s, float("nan")) for s in schedules] for o in optimizers]
    fig, ax = plt.subplots(figsize=(1.2 * len(schedules) + 2, 0.6 * len(optimizers) + 1.5),
                           dpi=150)
    im = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(schedules)), schedules, rotation=30, ha="right")
    ax.set_yticks(range(len(optimizers)), optimizers)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v == v:
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(im)
    ax.set_title(f"best {r['metric']}")
    fig.tight_layout()
    fig.savefig(folder / "optimizer_x_schedule.png")
    plt.close(fig)
