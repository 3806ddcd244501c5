"""Per axis (optimizer, schedule, init, weight-decay band), per level: how its trials did,
and the optimizer x schedule matrix of best values."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.review._evidence import AXES, Evidence, by_level, level
from hpo.review._format import fmt
from hpo.review.sections._section import (
    COUNT,
    NUMBER,
    Report,
    Titled,
    mapping,
    maybe,
    record_of,
)

_LEVEL = record_of({
    "trials": COUNT,  # finished: complete + pruned
    "complete": COUNT,
    "best": maybe("number"), "median": maybe("number"),
    "top_quartile_mean": maybe("number"),  # over the level's complete trials
    # the best value any of its trials reached, pruned ones included, and at which epoch
    "best_any": maybe("number"), "best_any_epoch": maybe("integer"),
})
SCHEMA = {"factors": record_of({**{axis: mapping(_LEVEL) for axis in AXES},
                                "optimizer_x_schedule": mapping(mapping(NUMBER))})}


def _summary(values: list[float], n: int, sign: float) -> dict[str, Any]:
    ranked = sorted(values, key=lambda v: -sign * v)
    quartile = ranked[: max(1, math.ceil(len(ranked) / 4))] if ranked else []
    return {"trials": n, "complete": len(values),
            "best": ranked[0] if ranked else None,
            "median": statistics.median(values) if values else None,
            "top_quartile_mean": statistics.fmean(quartile) if quartile else None}


def _best(values: list[tuple[float, int]], sign: float) -> tuple[float, int] | None:
    """The best (value, epoch) pair; ties go to the earlier epoch."""
    return max(values, key=lambda ve: (sign * ve[0], -ve[1])) if values else None


def factors(finished: list[FrozenTrial], sign: float) -> dict[str, Any]:
    """Per-axis tables and the optimizer x schedule matrix of best values."""
    out: dict[str, Any] = {}
    for axis in AXES:
        out[axis] = {}
        for lvl, ts in by_level(finished, axis):
            row = _summary([t.value for t in ts if t.state == TrialState.COMPLETE], len(ts), sign)
            reached = _best([(record.last_value(t), max(t.intermediate_values, default=0))
                             for t in ts if record.last_value(t) is not None], sign)
            row["best_any"], row["best_any_epoch"] = reached if reached else (None, None)
            out[axis][lvl] = row
    matrix: dict[str, dict[str, float]] = defaultdict(dict)
    for t in finished:
        if t.state == TrialState.COMPLETE:
            o, s = level(t, "optimizer"), level(t, "schedule")
            if s not in matrix[o] or sign * t.value > sign * matrix[o][s]:
                matrix[o][s] = t.value
    out["optimizer_x_schedule"] = dict(matrix)
    return out


def build(e: Evidence, r: Report) -> Report:
    return {"factors": factors(e.finished, e.sign)}


def _matrix(r: Report) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(schedules, optimizers, best value per cell or None) of the optimizer x schedule table."""
    matrix = r["factors"]["optimizer_x_schedule"]
    schedules = sorted({s for row in matrix.values() for s in row})
    optimizers = sorted(matrix)
    return schedules, optimizers, [[matrix[o].get(s) for s in schedules] for o in optimizers]


def tables(r: Report) -> list[Titled]:
    out = []
    for axis in AXES:
        rows = [[lvl, str(s["trials"]), str(s["complete"]), fmt(s["best"]), fmt(s["median"]),
                 fmt(s["top_quartile_mean"]),
                 "-" if s["best_any"] is None else f"{fmt(s['best_any'])} (epoch "
                                                   f"{s['best_any_epoch']})",
                 "thin: fewer than 3 complete" if s["complete"] < 3 else ""]
                for lvl, s in r["factors"][axis].items()]
        out.append((f"By {axis.replace('_', ' ')} (final values of complete trials)",
                    ([axis, "trials", "complete", "best", "median", "top-quartile mean",
                      "best reached", "evidence"], rows)))
    schedules, optimizers, grid = _matrix(r)
    out.append((f"Best {r['metric']} of complete trials: optimizer x schedule (- : no complete "
                "trial)", (["optimizer", *schedules],
                           [[o, *map(fmt, row)] for o, row in zip(optimizers, grid,
                                                                  strict=True)])))
    return out


def _ink(value: float, low: float, high: float) -> str:
    """Black on the light end of viridis, white on the dark end: readable on every cell."""
    share = 0.5 if high <= low else (value - low) / (high - low)
    return "black" if share > 0.55 else "white"


def figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    """The matrix as a heat map, every cell labelled."""
    import plotly.graph_objects as go

    metric = r["metric"]
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
    heat.update_layout(title=f"{r['study']}: best {metric} per optimizer and schedule ('none': "
                             "no complete trial)", xaxis_title="schedule", yaxis_title="optimizer")
    return [(f"Best {metric}: optimizer x schedule", heat)]


def pngs(r: Report, folder: Path) -> None:
    """``optimizer_x_schedule.png``: the heat map for papers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                    fontsize=7, color="gray" if v is None else _ink(v, min(values), max(values)))
    fig.colorbar(im, label=r["metric"])
    ax.set_title(f"{r['study']}: best {r['metric']}\n(none: no complete trial)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "optimizer_x_schedule.png")
    plt.close(fig)
