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

from hpo import record
from hpo.limits import EXPLODING, VANISHING
from hpo.review._format import fmt, group_label, markdown_table, pm, text_table
from hpo.review._headtohead import figure as h2h_figure
from hpo.review._headtohead import png as h2h_png
from hpo.review._headtohead import tables as h2h_tables

Table = tuple[list[str], list[list[str]]]
# The sections a caller may ask for by name (``hpo replicate`` prints only "replicates").
SECTIONS = ("head_to_head", "trials", "top", "factors", "rungs", "matrix", "importances",
            "gradient_flow", "compute", "curves", "replicates")


def sections(r: dict[str, Any], only: tuple[str, ...] = SECTIONS) -> list[tuple[str, Table]]:
    """The report as titled tables, in reading order; ``only`` picks sections by name."""
    out: list[tuple[str, str, Table]] = []
    if r.get("head_to_head"):
        out += [("head_to_head", title, table)
                for title, table in h2h_tables(r["head_to_head"], r["metric"])]
    counts = r["n_trials"]
    out.append(("trials", "Trials", (list(counts), [[str(v) for v in counts.values()]])))
    if r.get("warm_start"):
        out.append(("trials", "Warm start: trials copied from earlier studies to seed the "
                              "sampler (in no statistic below)",
                    (["study", "trials"], [[k, str(v)] for k, v in r["warm_start"].items()])))
    rows = []
    for i, t in enumerate(r["top"], 1):
        c = t["config"]
        rows.append([str(i), str(t["trial_number"]), t["state"], fmt(t["value"]),
                     fmt(t["epochs"]), fmt(t["wall_time_s"], 1), fmt(c.get("optimizer")),
                     f"{c.get('lr', 0):.3g}", f"{c.get('weight_decay', 0):.3g}",
                     fmt(c.get("schedule")), fmt(c.get("init")),
                     fmt(c.get("zero_init_residual")), fmt(c.get("no_decay_bn_bias"))])
    out.append(("top", f"Top {len(r['top'])} configurations ({r['metric']}; pruned trials by "
                       "their last value)",
                (["#", "trial", "state", r["metric"], "epochs", "wall s", "optimizer", "lr", "wd",
                  "schedule", "init", "zero_init", "no_decay_bn"], rows)))
    for axis in ("optimizer", "schedule", "init", "weight_decay_band"):
        rows = [[level, str(s["trials"]), str(s["complete"]), fmt(s["best"]), fmt(s["median"]),
                 fmt(s["top_quartile_mean"]),
                 "-" if s["best_any"] is None else f"{fmt(s['best_any'])} (epoch "
                                                   f"{s['best_any_epoch']})",
                 "thin: fewer than 3 complete" if s["complete"] < 3 else ""]
                for level, s in r["factors"][axis].items()]
        out.append(("factors", f"By {axis.replace('_', ' ')} (final values of complete trials)",
                    ([axis, "trials", "complete", "best", "median", "top-quartile mean",
                      "best reached", "evidence"], rows)))
    for axis, levels in r["rungs"]["by"].items():
        rows = [[level, str(x["epoch"]), str(x["reached"]), fmt(x["best"]), fmt(x["median"]),
                 f"{100 * x['survived']:.0f} %", "thin" if x["thin"] else ""]
                for level, xs in levels.items() for x in xs]
        out.append(("rungs", f"By {axis} at every epoch where trials were stopped "
                             f"({', '.join(map(str, r['rungs']['epochs']))})",
                    ([axis, "epoch", "reached", "best", "median", "completed", "evidence"],
                     rows)))
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    grid = [[o, *(fmt(row.get(s)) for s in schedules)] for o, row in sorted(matrix.items())]
    out.append(("matrix", f"Best {r['metric']} of complete trials: optimizer x schedule "
                          "(- : no complete trial)", (["optimizer", *schedules], grid)))
    out.append(("importances", f"Parameter importances: {r['importances_note']}",
                (["parameter", "importance"],
                 [[k, fmt(v, 3)] for k, v in r["importances"].items()])))
    out.append(("gradient_flow", *gradient_table(r)))
    comp = r["compute"]
    out.append(("compute", "Compute", (["outcome", "trials", "epochs", "device-hours"],
                                       [[k, str(comp[k]["trials"]), str(comp[k]["epochs"]),
                                         fmt(comp[k]["device_hours"], 4)]
                                        for k in ("complete", "pruned", "paused", "promoted",
                                                  "failed", "retried")])))
    p = comp["pruning"]
    out.append(("compute", "Pruning", (["epochs if every trial ran fully", "epochs run", "saved",
                                        "share saved"],
                                       [[str(p["full_epochs"]), str(p["epochs_run"]),
                                         str(p["saved_epochs"]),
                                         f"{100 * p['saved_share']:.1f} %"]])))
    out.append(("curves", "Learning curves of the top trials", (
        ["trial", f"{r['metric']} per epoch"],
        [[str(t["trial_number"]), " ".join(fmt(v, 3) for v in t["curve"])] for t in r["top"]])))
    reps = r["replicates"]
    if reps["configs"]:
        rows = [[str(c["trial_number"]), str(c["n"]), pm(c["val_mean"], c["val_ci95"]),
                 pm(c["test_mean"], c["test_ci95"])] for c in reps["configs"]]
        verdict = {True: "yes", False: "no", None: "needs 2+ seeds for both"}[
            reps["leader_separated"]]
        if reps["p_value"] is not None:
            verdict += f" (Welch's t-test, p = {reps['p_value']:.3g})"
        out.append(("replicates", f"Replicates (mean +/- 95% CI); leader separated from "
                                  f"runner-up: {verdict}",
                    (["trial", "seeds", r["metric"], "test accuracy"], rows)))
    return [(title, table) for name, title, table in out if name in only]


def gradient_table(r: dict[str, Any]) -> tuple[str, Table]:
    """The "Gradient flow" section: one row per optimizer (and residual / plain)."""
    flow = r["gradient_flow"]
    stages = list(flow["groups"][0]["update_ratio"]) if flow["groups"] else []
    rows = [[group_label(g), str(g["trials"]), fmt(g["final_train_loss"]),
             f"{g['ratio_first']:.3g}", f"{g['ratio_last']:.3g}",
             f"{100 * g['flagged']:.0f} %",
             *(f"{g['update_ratio'].get(s, float('nan')):.2g}" for s in stages)]
            for g in flow["groups"]]
    title = (f"Gradient flow ({flow['measured_trials']} trials measured; ratio = stem / last "
             f"stage gradient norm, vanishing below {VANISHING:g}, exploding above "
             f"{EXPLODING:g}; update = ||w_end - w_start|| / ||w_start|| in the last epoch)")
    return title, (["cell", "trials", "final train loss", "ratio epoch 1", "ratio last",
                    "flagged",
                    *(f"update {s}" for s in stages)], rows)


def _head(r: dict[str, Any]) -> str:
    return (f"study {r['study']} ({r['storage']}): {r['metric']}, {r['direction']}; best "
            f"{fmt(r['best']['value'])} (trial {r['best']['trial_number']})")


def to_text(r: dict[str, Any], only: tuple[str, ...] = SECTIONS) -> str:
    parts = [f"Verdict: {r['verdict']}", _head(r)] if only == SECTIONS else []
    for title, (headers, rows) in sections(r, only):
        parts.append(f"\n{title}\n" + text_table(headers, rows))
    return "\n".join(parts) + "\n"


def to_markdown(r: dict[str, Any]) -> str:
    parts = [f"# Study `{r['study']}`\n\n**Verdict:** {r['verdict']}\n\n{_head(r)}"]
    for title, (headers, rows) in sections(r):
        parts.append(f"## {title}\n\n{markdown_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"


def to_json(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2, sort_keys=False) + "\n"


def to_html(r: dict[str, Any], study: optuna.Study, out: Path | None) -> str:
    """One self-contained page; PNG figures go to ``<out stem>_figures/`` when ``out`` is set.

    plotly.js is inlined once, in the page head; every figure after it only carries its data.
    """
    from plotly.offline import get_plotlyjs

    parts = [f"<h1>Study {html.escape(r['study'])}</h1>",
             f"<p class='verdict'><b>Verdict:</b> {html.escape(r['verdict'])}</p>",
             f"<p>{html.escape(_head(r))}</p>"]
    for title, fig in _figures(r, study):
        parts.append(f"<h2>{html.escape(title)}</h2>" +
                     fig.to_html(full_html=False, include_plotlyjs=False))
    for title, (headers, rows) in sections(r):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    if out is not None:
        _pngs(r, out.parent / f"{out.stem}_figures")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             ".verdict{font-size:1.15em;background:#f3f6fa;padding:0.6em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hpo report: "
            f"{html.escape(r['study'])}</title><style>{style}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _matrix(r: dict[str, Any]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(schedules, optimizers, best value per cell or None) of the optimizer x schedule table."""
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    optimizers = sorted(matrix)
    return schedules, optimizers, [[matrix[o].get(s) for s in schedules] for o in optimizers]


def _ink(value: float, low: float, high: float) -> str:
    """Black on the light end of viridis, white on the dark end: readable on every cell."""
    share = 0.5 if high <= low else (value - low) / (high - low)
    return "black" if share > 0.55 else "white"


def _figures(r: dict[str, Any], study: optuna.Study) -> list[tuple[str, Any]]:
    import warnings

    import plotly.graph_objects as go
    from optuna import visualization as vis

    name, metric = r["study"], r["metric"]
    trials = [t for t in study.get_trials(deepcopy=False) if not record.is_replicate(t)]
    figs: list[tuple[str, Any]] = []
    if r.get("head_to_head"):
        figs.append(("Head-to-head: expected best value per budget",
                     h2h_figure(r["head_to_head"], name, metric)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = optuna.create_study(direction=study.direction)
        sub.add_trials(trials)
        history = vis.plot_optimization_history(sub, target_name=metric)
        history.update_layout(title=f"{name}: {metric} of each trial and the best so far",
                              xaxis_title="trial", yaxis_title=metric)
        figs.append(("Optimization history", history))
        curves = vis.plot_intermediate_values(sub)
        curves.update_layout(title=f"{name}: {metric} per epoch of every trial (pruned ones "
                                   "stop early)", xaxis_title="epoch", yaxis_title=metric)
        figs.append(("Intermediate values", curves))
        axes = [p for p in ("optimizer", "schedule", "init") if any(p in t.params
                                                                    for t in trials)]
        parallel = vis.plot_parallel_coordinate(sub, params=axes or None, target_name=metric)
        parallel.update_layout(title=f"{name}: recipes of the complete trials and their {metric}")
        figs.append(("Parallel coordinates", parallel))
    if r["importances"]:
        imp = r["importances"]
        bars = go.Figure(go.Bar(x=list(imp.values()), y=list(imp), orientation="h"))
        bars.update_layout(title=f"{name}: parameter importances ({r['importances_note']})",
                           xaxis_title="importance (share, PED-ANOVA)", yaxis_title="parameter")
        figs.append(("Parameter importances", bars))
    worst = [t for t in record.ranked(study, trials, states=(optuna.trial.TrialState.PRUNED,))
             if t.user_attrs.get(record.GRADIENTS)][-2:]
    shown = [t for t in record.leaders(study, trials)[:3] + worst
             if t.user_attrs.get(record.GRADIENTS)]
    if shown:
        flow = go.Figure()
        for t in shown:
            g = t.user_attrs[record.GRADIENTS]
            for i, stage in enumerate(g["stages"]):
                flow.add_trace(go.Scatter(
                    x=list(range(1, len(g["grad_norm"]) + 1)),
                    y=[row[i] for row in g["grad_norm"]], mode="lines+markers",
                    legendgroup=str(t.number), name=f"trial {t.number} ({t.state.name.lower()}) "
                                                    f"{stage}"))
        flow.update_layout(title=f"{name}: gradient norm per stage, top trials and the worst "
                                 "pruned ones", xaxis_title="epoch",
                           yaxis_title="gradient L2 norm (log)", yaxis_type="log")
        figs.append(("Gradient flow", flow))
    schedules, optimizers, grid = _matrix(r)
    values = [v for row in grid for v in row if v is not None]
    heat = go.Figure(go.Heatmap(z=grid, x=schedules, y=optimizers, colorscale="Viridis",
                                colorbar={"title": metric}, hoverongaps=False))
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            heat.add_annotation(x=schedules[j], y=optimizers[i], showarrow=False,
                                text="none" if v is None else f"{v:.4f}",
                                font={"color": "gray" if v is None else
                                      _ink(v, min(values), max(values))})
    heat.update_layout(title=f"{name}: best {metric} per optimizer and schedule ('none': no "
                             "complete trial)", xaxis_title="schedule", yaxis_title="optimizer")
    figs.append((f"Best {metric}: optimizer x schedule", heat))
    return figs


def _pngs(r: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, metric = r["study"], r["metric"]
    folder.mkdir(parents=True, exist_ok=True)
    if r.get("head_to_head"):
        h2h_png(r["head_to_head"], name, metric, folder / "expected_best.png")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    for t in r["top"]:
        ax.plot(range(1, len(t["curve"]) + 1), t["curve"], marker=".",
                label=f"trial {t['trial_number']} ({t['config'].get('optimizer')}, {t['state']})")
    ax.set(xlabel="epoch", ylabel=metric, title=f"{name}: learning curves of the top trials")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "curves.png")
    plt.close(fig)
    schedules, optimizers, grid = _matrix(r)
    values = [v for row in grid for v in row if v is not None]
    fig, ax = plt.subplots(figsize=(1.2 * len(schedules) + 2.5, 0.6 * len(optimizers) + 2),
                           dpi=150)
    im = ax.imshow([[float("nan") if v is None else v for v in row] for row in grid],
                   cmap="viridis")
    ax.set_xticks(range(len(schedules)), schedules, rotation=30, ha="right")
    ax.set_yticks(range(len(optimizers)), optimizers)
    ax.set(xlabel="schedule", ylabel="optimizer")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, "none" if v is None else f"{v:.3f}", ha="center", va="center",
                    fontsize=7, color="gray" if v is None else
                    _ink(v, min(values), max(values)))
    fig.colorbar(im, label=metric)
    ax.set_title(f"{name}: best {metric}\n(none: no complete trial)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "optimizer_x_schedule.png")
    plt.close(fig)
