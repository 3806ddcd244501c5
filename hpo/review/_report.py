"""The study report as one JSON-ready dictionary; every output format renders this dictionary.

Schema (``hpo/review/report.schema.json`` is the machine-readable form):

- ``study``, ``direction``, ``metric``, ``storage`` (password redacted)
- ``n_trials``: count per state (``complete``, ``pruned``, ``fail``, ``running``, ``waiting``)
- ``best``: ``value``, ``trial_number``, ``config`` of the best complete trial
- ``top``: the best K complete trials: ``trial_number``, ``value``, ``epochs``,
  ``wall_time_s``, ``config``, ``curve`` (the metric per epoch)
- ``factors``: per axis (``optimizer``, ``schedule``, ``init``, ``weight_decay_band``), per
  level: ``trials`` (finished: complete + pruned), ``complete``, ``best``, ``median``,
  ``top_quartile_mean`` (over the level's complete trials); plus ``optimizer_x_schedule``:
  the best value per optimizer and schedule
- ``importances``: parameter -> importance (Optuna's default evaluator, complete trials)
- ``compute``: per category (``complete``, ``pruned``, ``failed``, ``retried``): ``trials``,
  ``epochs`` (trained by that trial itself), ``device_hours``; and ``pruning``: ``full_epochs``
  (finished trials x the spec's epochs), ``epochs_run``, ``saved_epochs``, ``saved_share``
- ``replicates``: per replicated trial: ``trial_number``, ``n``, ``val_mean``, ``val_ci95``,
  ``test_mean``, ``test_ci95``; and ``leader_separated`` (Welch's t-test, p < 0.05)

Replicate trials never enter ``top``, ``factors`` or ``n_trials``' budget counts: they are
reported only under ``replicates``.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UserError

AXES = ("optimizer", "schedule", "init", "weight_decay_band")


def _is_replicate(t: FrozenTrial) -> bool:
    return "replicate_of" in t.user_attrs


def wd_band(wd: float) -> str:
    """The decade of a weight decay, e.g. ``1e-4..1e-3``; ``0`` for no decay."""
    if wd <= 0:
        return "0"
    low = math.floor(math.log10(wd) + 1e-9)
    return f"1e{low}..1e{low + 1}"


def _level(t: FrozenTrial, axis: str) -> str:
    c = t.user_attrs.get("config", {})
    if axis == "weight_decay_band":
        return wd_band(float(c.get("weight_decay", 0.0)))
    return str(c.get(axis, "?"))


def _summary(values: list[float], n: int, sign: float) -> dict[str, Any]:
    ranked = sorted(values, key=lambda v: -sign * v)
    quartile = ranked[: max(1, math.ceil(len(ranked) / 4))] if ranked else []
    return {"trials": n, "complete": len(values),
            "best": ranked[0] if ranked else None,
            "median": statistics.median(values) if values else None,
            "top_quartile_mean": statistics.fmean(quartile) if quartile else None}


def factors(finished: list[FrozenTrial], sign: float) -> dict[str, Any]:
    """Per-axis tables and the optimizer x schedule matrix of best values."""
    out: dict[str, Any] = {}
    for axis in AXES:
        groups: dict[str, list[FrozenTrial]] = defaultdict(list)
        for t in finished:
            groups[_level(t, axis)].append(t)
        out[axis] = {level: _summary([t.value for t in ts if t.state == TrialState.COMPLETE],
                                     len(ts), sign) for level, ts in sorted(groups.items())}
    matrix: dict[str, dict[str, float]] = defaultdict(dict)
    for t in finished:
        if t.state == TrialState.COMPLETE:
            o, s = _level(t, "optimizer"), _level(t, "schedule")
            if s not in matrix[o] or sign * t.value > sign * matrix[o][s]:
                matrix[o][s] = t.value
    out["optimizer_x_schedule"] = dict(matrix)
    return out


def _epochs_trained(t: FrozenTrial) -> int:
    """Epochs this trial trained itself (a retry inherits its predecessor's)."""
    run = int(t.user_attrs.get("epochs_run", max(t.intermediate_values, default=0)))
    return max(0, run - int(t.user_attrs.get("resumed_from_epoch", 0)))


def _hours(t: FrozenTrial) -> float:
    if t.datetime_start is None or t.datetime_complete is None:
        return 0.0
    return (t.datetime_complete - t.datetime_start).total_seconds() / 3600


def compute(trials: list[FrozenTrial], full_epochs: int) -> dict[str, Any]:
    """Epochs and device-hours per outcome, and what pruning saved.

    ``saved_share`` = epochs that pruned trials did not run / epochs that running every
    finished trial to the full budget would have cost.
    """
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    cats: dict[str, list[FrozenTrial]] = {"complete": [], "pruned": [], "failed": [],
                                          "retried": []}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            cats["complete"].append(t)
        elif t.state == TrialState.PRUNED:
            cats["pruned"].append(t)
        elif t.state == TrialState.FAIL:
            cats["retried" if t.number in retried else "failed"].append(t)
    out: dict[str, Any] = {
        k: {"trials": len(ts), "epochs": sum(_epochs_trained(t) for t in ts),
            "device_hours": round(sum(_hours(t) for t in ts), 6)} for k, ts in cats.items()
    }
    finished = cats["complete"] + cats["pruned"]
    run = sum(int(t.user_attrs.get("epochs_run", 0)) for t in finished)
    full = full_epochs * len(finished)
    saved = sum(full_epochs - int(t.user_attrs.get("epochs_run", 0)) for t in cats["pruned"])
    out["pruning"] = {"full_epochs": full, "epochs_run": run, "saved_epochs": saved,
                      "saved_share": saved / full if full else 0.0}
    return out


def _ci95(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(half)


def replicates(trials: list[FrozenTrial], sign: float) -> dict[str, Any]:
    """Mean and 95% CI per replicated configuration; is the leader separated from the next?"""
    groups: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if _is_replicate(t) and t.state == TrialState.COMPLETE:
            groups[int(t.user_attrs["replicate_of"])].append(t)
    rows = []
    for number, ts in groups.items():
        val_mean, val_ci = _ci95([t.value for t in ts])
        tests = [t.user_attrs["test_accuracy"] for t in ts if "test_accuracy" in t.user_attrs]
        test_mean, test_ci = _ci95(tests)
        rows.append({"trial_number": number, "n": len(ts), "val_mean": val_mean,
                     "val_ci95": val_ci, "test_mean": test_mean, "test_ci95": test_ci,
                     "values": [t.value for t in ts]})
    rows.sort(key=lambda r: -sign * r["val_mean"])
    separated = None
    if len(rows) >= 2 and len(rows[0]["values"]) >= 2 and len(rows[1]["values"]) >= 2:
        from scipy import stats

        p = stats.ttest_ind(rows[0]["values"], rows[1]["values"], equal_var=False).pvalue
        separated = bool(p < 0.05) if math.isfinite(p) else False
    return {"configs": rows, "leader_separated": separated}


def _importances(study: optuna.Study, complete: list[FrozenTrial]) -> dict[str, float]:
    if len(complete) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sub = optuna.create_study(direction=study.direction)  # in memory, main trials only
            sub.add_trials(complete)
            values = optuna.importance.get_param_importances(sub)
        except (RuntimeError, ValueError):  # e.g. no parameter shared by every complete trial
            return {}
    return {k: round(float(v), 6) for k, v in values.items()}


def build_report(study: optuna.Study, storage_shown: str, top_k: int = 5) -> dict[str, Any]:
    """The report of ``study``; refuses a study with no finished trial."""
    trials = study.get_trials(deepcopy=False)
    spec = study.user_attrs.get("spec", {})
    metric = spec.get("study", {}).get("metric", "val_accuracy")
    full_epochs = int(spec.get("training", {}).get("epochs", 0)) or max(
        (int(t.user_attrs.get("epochs_run", 0)) for t in trials), default=0)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    sign = 1.0 if maximize else -1.0
    main = [t for t in trials if not _is_replicate(t)]
    finished = [t for t in main if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = sorted((t for t in main if t.state == TrialState.COMPLETE),
                      key=lambda t: (-sign * t.value, t.number))
    if not main:
        raise UserError(f"study {study.study_name!r} has no trial yet")
    if not complete:
        states = ", ".join(sorted({t.state.name.lower() for t in main}))
        raise UserError(f"study {study.study_name!r} has no complete trial (its trials are: "
                        f"{states}); nothing to report")
    counts = {s.name.lower(): sum(t.state == s for t in main) for s in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
               TrialState.WAITING)}
    best = complete[0]
    return {
        "study": study.study_name,
        "direction": "maximize" if maximize else "minimize",
        "metric": metric,
        "storage": storage_shown,
        "n_trials": counts,
        "best": {"value": best.value, "trial_number": best.number,
                 "config": best.user_attrs.get("config", {})},
        "top": [{"trial_number": t.number, "value": t.value,
                 "epochs": t.user_attrs.get("epochs_run"),
                 "wall_time_s": t.user_attrs.get("wall_time_s"),
                 "config": t.user_attrs.get("config", {}),
                 "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}
                for t in complete[:top_k]],
        "factors": factors(finished, sign),
        "importances": _importances(study, complete),
        "compute": compute(main, full_epochs),
        "replicates": replicates(trials, sign),
    }
