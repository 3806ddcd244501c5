"""Factor levels compared at every epoch where trials were stopped, and at the last.

With successive halving most trials stop after an epoch or two, so final values alone leave
most levels empty; comparing the values every trial of a level reached at the same epoch uses
all of them.
"""

from __future__ import annotations

import statistics
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.review._evidence import AXES, Evidence, by_level
from hpo.review._format import fmt
from hpo.review.sections._section import (
    NUMBER,
    SHARE,
    Report,
    Titled,
    array,
    mapping,
    record_of,
)

THIN = 3  # fewer trials than this at a rung: the comparison is anecdote, and says so
SCHEMA = {"rungs": record_of({
    "epochs": array({"type": "integer", "minimum": 1}),  # every stopping epoch, and the last
    "by": mapping(mapping(array(record_of({  # axis -> level -> one row per epoch
        "epoch": {"type": "integer"},
        "reached": {"type": "integer", "minimum": 1},  # trials that reported that epoch
        "best": NUMBER, "median": NUMBER,
        "survived": SHARE,  # share of them that completed
        "thin": {"type": "boolean"}})))),
})}


def rungs(finished: list[FrozenTrial], sign: float, full_epochs: int) -> dict[str, Any]:
    stops = {max(t.intermediate_values) for t in finished
             if t.state == TrialState.PRUNED and t.intermediate_values}
    epochs = sorted(stops | ({full_epochs} if full_epochs else set()))
    by: dict[str, Any] = {}
    for axis in AXES[:3]:
        by[axis] = {}
        for lvl, ts in by_level(finished, axis):
            rows = []
            for epoch in epochs:
                there = [t for t in ts if epoch in t.intermediate_values]
                values = [t.intermediate_values[epoch] for t in there]
                if not there:
                    continue
                rows.append({
                    "epoch": epoch, "reached": len(there),
                    "best": max(values, key=lambda v: sign * v),
                    "median": statistics.median(values),
                    "survived": sum(t.state == TrialState.COMPLETE for t in there) / len(there),
                    "thin": len(there) < THIN,
                })
            by[axis][lvl] = rows
    return {"epochs": epochs, "by": by}


def build(e: Evidence, r: Report) -> Report:
    return {"rungs": rungs(e.finished, e.sign, e.full_epochs)}


def tables(r: Report) -> list[Titled]:
    out = []
    for axis, levels in r["rungs"]["by"].items():
        rows = [[lvl, str(x["epoch"]), str(x["reached"]), fmt(x["best"]), fmt(x["median"]),
                 f"{100 * x['survived']:.0f} %", "thin" if x["thin"] else ""]
                for lvl, xs in levels.items() for x in xs]
        out.append((f"By {axis} at every epoch where trials were stopped "
                    f"({', '.join(map(str, r['rungs']['epochs']))})",
                    ([axis, "epoch", "reached", "best", "median", "completed", "evidence"],
                     rows)))
    return out
