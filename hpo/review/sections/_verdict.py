"""The report's answer in one sentence with numbers: which recipe wins, by how much over the
runner-up level of each axis, and whether replicates separated them (or the command that
would). A head-to-head study answers with its own verdict."""

from __future__ import annotations

import shlex
from typing import Any

from optuna.trial import FrozenTrial

from hpo.review._evidence import AXES, Evidence, level
from hpo.review.sections._headtohead import unequal_note
from hpo.review.sections._headtohead import verdict as h2h_verdict
from hpo.review.sections._section import Report

SCHEMA = {"verdict": {"type": "string", "minLength": 20}}


def verdict(study_name: str, metric: str, leader: FrozenTrial, levels: dict[str, Any],
            reps: dict[str, Any], sign: float) -> str:
    recipe = " + ".join(level(leader, axis) for axis in AXES[:3])
    parts = []
    for axis in AXES[:3]:
        mine = level(leader, axis)
        others = [(row["best_any"], row["best_any_epoch"], lvl, row)
                  for lvl, row in levels[axis].items()
                  if lvl != mine and row["best_any"] is not None]
        if not others:
            parts.append(f"{axis}: only {mine} tried")
            continue
        value, epoch, lvl, row = max(others, key=lambda o: sign * o[0])
        where = "" if row["best"] is not None and row["best"] == value else \
            f" at epoch {epoch}, pruned"
        gap = sign * (leader.value - value)
        if abs(gap) < 5e-5:  # equal at the 4 decimals shown
            parts.append(f"{axis}: {lvl} ties at {value:.4f}{where}")
            continue
        parts.append(f"{axis}: runner-up {lvl} {value:.4f}{where}, "
                     f"{abs(gap):.4f} {'behind' if gap > 0 else 'ahead'}")
    text = (f"{recipe} leads with {metric} {leader.value:.4f} (trial {leader.number}); "
            + "; ".join(parts) + ". ")
    separated = reps["leader_separated"]
    if separated is None:
        return text + (f"Not yet confirmed: 'hpo replicate {shlex.quote(study_name)} --top 2 "
                       "--seeds 3' retrains the top 2 with 3 new seeds each and tests the gap.")
    if separated:
        return text + (f"Replicates separate the leader from the runner-up (Welch's t-test, "
                       f"p = {reps['p_value']:.3g}).")
    return text + (f"Replicates do not separate the leader from the runner-up (Welch's "
                   f"t-test, p = {reps['p_value']:.3g}): within noise of each other.")


def build(e: Evidence, r: Report) -> Report:
    if r["head_to_head"]:
        return {"verdict": h2h_verdict(r["head_to_head"])}
    levels = r["factors"]
    return {"verdict": verdict(e.study.study_name, e.metric, e.leaders[0], levels,
                               r["replicates"], e.sign)
            + unequal_note({axis: levels[axis] for axis in AXES[:3]})}
