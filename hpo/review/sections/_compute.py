"""What the study spent: epochs and device-hours per outcome, each epoch counted once, and
what pruning saved."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.review._evidence import Evidence
from hpo.review._format import fmt
from hpo.review.sections._section import COUNT, SHARE, Report, Titled, record_of

# paused: the asha pruner's, still promotable; promoted: paused, then carried on by a
# continuation; retried: failed, then resumed by a retry
OUTCOMES = ("complete", "pruned", "paused", "promoted", "failed", "retried")
_SPENT = record_of({"trials": COUNT, "epochs": COUNT,
                    "device_hours": {"type": "number", "minimum": 0}})
SCHEMA = {"compute": record_of({
    **{k: _SPENT for k in OUTCOMES},
    "pruning": record_of({"full_epochs": {"type": "integer"}, "epochs_run": {"type": "integer"},
                          "saved_epochs": {"type": "integer"}, "saved_share": SHARE}),
})}


def _epochs_trained(t: FrozenTrial) -> int:
    """Epochs this trial trained itself (a retry inherits its predecessor's)."""
    run = int(t.user_attrs.get(record.EPOCHS_RUN, max(t.intermediate_values, default=0)))
    return max(0, run - int(t.user_attrs.get(record.RESUMED_FROM_EPOCH, 0)))


def _hours(t: FrozenTrial) -> float:
    if t.datetime_start is None or t.datetime_complete is None:
        return 0.0
    return (t.datetime_complete - t.datetime_start).total_seconds() / 3600


def compute(trials: list[FrozenTrial], full_epochs: int) -> dict[str, Any]:
    """``saved_share`` = epochs that pruned trials did not run / epochs that running every
    finished trial to the full budget would have cost."""
    retried = record.retried_numbers(trials)
    cats: dict[str, list[FrozenTrial]] = {k: [] for k in OUTCOMES}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            cats["complete"].append(t)
        elif t.state == TrialState.PRUNED:
            cats["promoted" if t.number in retried else record.state_name(t)].append(t)
        elif t.state == TrialState.FAIL:
            cats["retried" if t.number in retried else "failed"].append(t)
    out: dict[str, Any] = {
        k: {"trials": len(ts), "epochs": sum(_epochs_trained(t) for t in ts),
            "device_hours": round(sum(_hours(t) for t in ts), 6)} for k, ts in cats.items()
    }
    # Each lineage once, by its last trial, whose epochs_run counts the whole lineage's epochs.
    stopped = cats["pruned"] + cats["paused"]
    finished = cats["complete"] + stopped
    run = sum(int(t.user_attrs.get(record.EPOCHS_RUN, 0)) for t in finished)
    full = full_epochs * len(finished)
    saved = sum(full_epochs - int(t.user_attrs.get(record.EPOCHS_RUN, 0)) for t in stopped)
    out["pruning"] = {"full_epochs": full, "epochs_run": run, "saved_epochs": saved,
                      "saved_share": saved / full if full else 0.0}
    return out


def build(e: Evidence, r: Report) -> Report:
    return {"compute": compute(e.originals, e.full_epochs)}


def tables(r: Report) -> list[Titled]:
    comp, p = r["compute"], r["compute"]["pruning"]
    return [
        ("Compute", (["outcome", "trials", "epochs", "device-hours"],
                     [[k, str(comp[k]["trials"]), str(comp[k]["epochs"]),
                       fmt(comp[k]["device_hours"], 4)] for k in OUTCOMES])),
        ("Pruning", (["epochs if every trial ran fully", "epochs run", "saved", "share saved"],
                     [[str(p["full_epochs"]), str(p["epochs_run"]), str(p["saved_epochs"]),
                       f"{100 * p['saved_share']:.1f} %"]])),
    ]
