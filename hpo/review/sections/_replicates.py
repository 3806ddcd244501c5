"""Replicates: each retrained configuration's mean and 95 % CI over its seeds, and whether the
leader is separated from the runner-up (Welch's t-test)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.review._evidence import Evidence
from hpo.review._format import pm
from hpo.review._stats import ALPHA, ci95, welch
from hpo.review.sections._section import (
    INTEGER,
    NUMBER,
    Report,
    Titled,
    array,
    maybe,
    record_of,
)

SCHEMA = {"replicates": record_of({
    "configs": array(record_of({
        "trial_number": INTEGER, "n": INTEGER, "val_mean": NUMBER, "val_ci95": maybe("number"),
        "test_mean": maybe("number"), "test_ci95": maybe("number"), "values": array(NUMBER)})),
    "leader_separated": maybe("boolean"),  # Welch's t-test, p < 0.05; null: too few seeds
    "p_value": maybe("number"),
})}


def replicates(trials: list[FrozenTrial], sign: float) -> dict[str, Any]:
    groups: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if record.is_replicate(t) and t.state == TrialState.COMPLETE:
            groups[int(t.user_attrs[record.REPLICATE_OF])].append(t)
    rows = []
    for number, ts in groups.items():
        val_mean, val_ci = ci95([t.value for t in ts])
        tests = [t.user_attrs[record.TEST_ACCURACY] for t in ts
                 if record.TEST_ACCURACY in t.user_attrs]
        test_mean, test_ci = ci95(tests)
        rows.append({"trial_number": number, "n": len(ts), "val_mean": val_mean,
                     "val_ci95": val_ci, "test_mean": test_mean, "test_ci95": test_ci,
                     "values": [t.value for t in ts]})
    rows.sort(key=lambda r: -sign * r["val_mean"])
    separated, p_value = None, None
    if len(rows) >= 2 and len(rows[0]["values"]) >= 2 and len(rows[1]["values"]) >= 2:
        _, _, p_value = welch(rows[0]["values"], rows[1]["values"])  # identical: p = 1
        separated = p_value < ALPHA
    return {"configs": rows, "leader_separated": separated, "p_value": p_value}


def build(e: Evidence, r: Report) -> Report:
    return {"replicates": replicates(e.trials, e.sign)}


def tables(r: Report) -> list[Titled]:
    reps = r["replicates"]
    if not reps["configs"]:
        return []
    rows = [[str(c["trial_number"]), str(c["n"]), pm(c["val_mean"], c["val_ci95"]),
             pm(c["test_mean"], c["test_ci95"])] for c in reps["configs"]]
    verdict = {True: "yes", False: "no", None: "needs 2+ seeds for both"}[
        reps["leader_separated"]]
    if reps["p_value"] is not None:
        verdict += f" (Welch's t-test, p = {reps['p_value']:.3g})"
    return [(f"Replicates (mean +/- 95% CI); leader separated from runner-up: {verdict}",
             (["trial", "seeds", r["metric"], "test accuracy"], rows))]
