"""The study report as one JSON-ready dictionary; every output format renders this dictionary.

Schema (``hpo/review/report.schema.json`` is the machine-readable form):

- ``study``, ``direction``, ``metric``, ``storage`` (password redacted)
- ``verdict``: one sentence with numbers: the leading recipe, the best value of the runner-up
  level of each axis and the gap, and whether replicates separated them (or the command that
  would decide)
- ``n_trials``: count per state (``complete``, ``pruned``, ``paused``, ``failed``,
  ``running``, ``waiting``) of the study's own trials; ``duplicates`` (of those, reused
  results), ``replicates`` (replicate trials, any state) and ``warm_start`` (trials copied from
  earlier studies to seed the sampler) apart
- ``warm_start``: how many trials came from each earlier study (they enter no statistic)
- ``best``: ``value``, ``trial_number``, ``config`` of the best complete trial
- ``top``: the best K trials, complete first, pruned ones (by their last value) filling the
  rest: ``trial_number``, ``state``, ``value``, ``epochs``, ``wall_time_s``, ``config``,
  ``curve`` (the metric per epoch)
- ``factors``: per axis (``optimizer``, ``schedule``, ``init``, ``weight_decay_band``), per
  level: ``trials`` (finished: complete + pruned), ``complete``, ``best``, ``median``,
  ``top_quartile_mean`` (over the level's complete trials), ``best_any`` and
  ``best_any_epoch`` (the best value any of its trials reached, pruned ones included, and at
  which epoch); plus ``optimizer_x_schedule``: the best complete value per optimizer and
  schedule
- ``rungs``: ``epochs`` (every epoch where trials were stopped, and the last) and per axis, per
  level, per epoch: ``reached`` (trials that reported that epoch), ``best`` and ``median`` of
  the value there, ``survived`` (share of them that completed), ``thin`` (fewer than 3)
- ``importances``: parameter -> importance (PED-ANOVA, as optuna-dashboard computes it) when
  there are enough complete trials; ``importances_note`` says how many and why
- ``gradient_flow``: ``measured_trials`` and ``groups``, one per optimizer (and per ``model``
  and ``residual`` or plain network, where several were tried): ``trials``,
  ``final_train_loss`` (median training loss of the last epoch), ``ratio_first`` and
  ``ratio_last`` (median stem-to-last-stage gradient ratio at epoch 1 and at the last epoch),
  ``flagged`` (share of trials that vanished or exploded at some epoch), ``update_ratio``
  (per stage, median ||w_end - w_start|| / ||w_start|| of the last epoch)
- ``compute``: per category (``complete``, ``pruned``, ``paused`` (the asha pruner's, still
  promotable), ``promoted`` (paused, then carried on by a continuation), ``failed``,
  ``retried``): ``trials``, ``epochs`` (trained by that trial itself, so each epoch counts
  once), ``device_hours``; and ``pruning``: ``full_epochs`` (finished configurations x the
  spec's epochs), ``epochs_run``, ``saved_epochs``, ``saved_share``
- ``head_to_head``: null except for a ``[compare]`` study; its fields are documented in
  :func:`hpo.review._headtohead.head_to_head` and the schema
- ``replicates``: per replicated trial: ``trial_number``, ``n``, ``val_mean``, ``val_ci95``,
  ``test_mean``, ``test_ci95``, ``values``; ``leader_separated`` (Welch's t-test, p < 0.05)
  and its ``p_value``

Replicate trials never enter ``top``, ``factors``, ``rungs`` or the state counts; duplicates
(``duplicate_of``: a sampled repeat that reused a finished trial's result) are counted in
``n_trials`` but enter neither the factor statistics nor the compute figures twice.
"""

from __future__ import annotations

import math
import shlex
import statistics
import warnings
from collections import defaultdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.errors import UserError
from hpo.review._headtohead import head_to_head, unequal_note
from hpo.review._headtohead import verdict as h2h_verdict
from hpo.review._stats import ALPHA, ci95, welch

AXES = ("optimizer", "schedule", "init", "weight_decay_band")


def wd_band(wd: float) -> str:
    """The decade of a weight decay, e.g. ``1e-4..1e-3``; ``0`` for no decay."""
    if wd <= 0:
        return "0"
    low = math.floor(math.log10(wd) + 1e-9)
    return f"1e{low}..1e{low + 1}"


def _level(t: FrozenTrial, axis: str) -> str:
    c = record.config_of(t)
    if c is None:
        return "?"
    if axis == "weight_decay_band":
        return wd_band(c.weight_decay)
    return str(getattr(c, axis))


def _by_level(trials: list[FrozenTrial], axis: str) -> list[tuple[str, list[FrozenTrial]]]:
    """``trials`` grouped by their level on ``axis``, levels in sorted order."""
    groups: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        groups[_level(t, axis)].append(t)
    return sorted(groups.items())


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
        for level, ts in _by_level(finished, axis):
            row = _summary([t.value for t in ts if t.state == TrialState.COMPLETE], len(ts), sign)
            reached = _best([(record.last_value(t), max(t.intermediate_values, default=0))
                             for t in ts if record.last_value(t) is not None], sign)
            row["best_any"], row["best_any_epoch"] = reached if reached else (None, None)
            out[axis][level] = row
    matrix: dict[str, dict[str, float]] = defaultdict(dict)
    for t in finished:
        if t.state == TrialState.COMPLETE:
            o, s = _level(t, "optimizer"), _level(t, "schedule")
            if s not in matrix[o] or sign * t.value > sign * matrix[o][s]:
                matrix[o][s] = t.value
    out["optimizer_x_schedule"] = dict(matrix)
    return out


THIN = 3  # fewer trials than this at a rung: the comparison is anecdote, and says so


def rungs(finished: list[FrozenTrial], sign: float, full_epochs: int) -> dict[str, Any]:
    """Factor levels compared at every epoch where trials were stopped, and at the last.

    With successive halving most trials stop after an epoch or two, so final values alone
    leave most levels empty; comparing the values every trial of a level reached at the same
    epoch uses all of them.
    """
    stops = {max(t.intermediate_values) for t in finished
             if t.state == TrialState.PRUNED and t.intermediate_values}
    epochs = sorted(stops | ({full_epochs} if full_epochs else set()))
    by: dict[str, Any] = {}
    for axis in AXES[:3]:
        by[axis] = {}
        for level, ts in _by_level(finished, axis):
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
            by[axis][level] = rows
    return {"epochs": epochs, "by": by}


def verdict(study_name: str, metric: str, leader: FrozenTrial, levels: dict[str, Any],
            reps: dict[str, Any], sign: float) -> str:
    """One sentence: which recipe wins, the runner-up level of each axis and the gap, and
    whether replicates separated them (or the command that would)."""
    recipe = " + ".join(_level(leader, axis) for axis in AXES[:3])
    parts = []
    for axis in AXES[:3]:
        mine = _level(leader, axis)
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


def _epochs_trained(t: FrozenTrial) -> int:
    """Epochs this trial trained itself (a retry inherits its predecessor's)."""
    run = int(t.user_attrs.get(record.EPOCHS_RUN, max(t.intermediate_values, default=0)))
    return max(0, run - int(t.user_attrs.get(record.RESUMED_FROM_EPOCH, 0)))


def _hours(t: FrozenTrial) -> float:
    if t.datetime_start is None or t.datetime_complete is None:
        return 0.0
    return (t.datetime_complete - t.datetime_start).total_seconds() / 3600


def compute(trials: list[FrozenTrial], full_epochs: int) -> dict[str, Any]:
    """Epochs and device-hours per outcome, and what pruning saved.

    ``saved_share`` = epochs that pruned trials did not run / epochs that running every
    finished trial to the full budget would have cost.
    """
    retried = record.retried_numbers(trials)
    cats: dict[str, list[FrozenTrial]] = {"complete": [], "pruned": [], "paused": [],
                                          "promoted": [], "failed": [], "retried": []}
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


def replicates(trials: list[FrozenTrial], sign: float) -> dict[str, Any]:
    """Mean and 95% CI per replicated configuration; is the leader separated from the next?"""
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


def gradient_flow(finished: list[FrozenTrial]) -> dict[str, Any]:
    """Per optimizer (and per residual / plain network where both were tried): the median
    first-to-last gradient ratio at epoch 1 and at each trial's last epoch, the share of
    trials flagged vanishing or exploding at any epoch, and the median update-to-weight ratio
    per stage in the last epoch. Trials without diagnostics are left out."""
    measured = [t for t in finished if t.user_attrs.get(record.GRADIENTS)]
    plain_too = len({_residual(t) for t in measured}) > 1
    depths = len({_model(t) for t in measured}) > 1
    groups: dict[tuple[str, str | None, bool | None], list[FrozenTrial]] = defaultdict(list)
    for t in measured:
        key = (_level(t, "optimizer"), _model(t) if depths else None,
               _residual(t) if plain_too else None)
        groups[key].append(t)
    rows = []
    for (optimizer, model, residual), ts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        flows = [t.user_attrs[record.GRADIENTS] for t in ts]
        stages = flows[0]["stages"]
        losses = [t.user_attrs[record.CURVE]["train_loss"][-1] for t in ts
                  if t.user_attrs.get(record.CURVE, {}).get("train_loss")]
        rows.append({
            "optimizer": optimizer, "model": model, "residual": residual, "trials": len(flows),
            "final_train_loss": statistics.median(losses) if losses else None,
            "ratio_first": statistics.median(f["ratio"][0] for f in flows),
            "ratio_last": statistics.median(f["ratio"][-1] for f in flows),
            "flagged": sum(any(f["state"]) for f in flows) / len(flows),
            "update_ratio": {s: statistics.median(f["update_ratio"][-1][i] for f in flows
                                                  if f["stages"] == stages)
                             for i, s in enumerate(stages)},
        })
    return {"groups": rows, "measured_trials": len(measured)}


def _model(t: FrozenTrial) -> str:
    c = record.config_of(t)
    return "?" if c is None else c.model.name


def _residual(t: FrozenTrial) -> bool:
    c = record.config_of(t)
    return True if c is None else c.model.residual


# PED-ANOVA compares the best 10 % of the complete trials with all of them: below 10 complete
# trials that top set is a single trial, and the importances are noise.
MIN_IMPORTANCE_TRIALS = 10


def _importances(study: optuna.Study, complete: list[FrozenTrial]
                 ) -> tuple[dict[str, float], str]:
    """(importances, a note saying by what and from how many trials, or why none)."""
    n = len(complete)
    if n < MIN_IMPORTANCE_TRIALS:
        return {}, (f"not computed: {n} complete trial(s); PED-ANOVA compares the best 10 % of "
                    f"complete trials with all of them and needs at least "
                    f"{MIN_IMPORTANCE_TRIALS} for that top set to be more than one trial")
    sign = record.direction_sign(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sub = optuna.create_study(direction=study.direction)  # in memory, main trials only
            sub.add_trials(complete)
            # As optuna-dashboard computes them: PED-ANOVA on a target where lower is better.
            values = optuna.importance.get_param_importances(
                sub, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: -sign * t.value)
        except (RuntimeError, ValueError) as e:  # e.g. no parameter shared by every trial
            return {}, f"not computed: {e}"
    return ({k: round(float(v), 6) for k, v in values.items()},
            f"PED-ANOVA (optuna-dashboard's evaluator) over the {n} complete trials")


def build_report(study: optuna.Study, storage_shown: str, top_k: int = 5) -> dict[str, Any]:
    """The report of ``study``; refuses a study with no complete trial."""
    trials = study.get_trials(deepcopy=False)
    metric = record.spec_metric(study)
    main = [t for t in trials if not record.is_replicate(t) and not record.is_warm(t)
            and record.SURPLUS not in t.user_attrs]
    warm: dict[str, int] = defaultdict(int)
    for t in trials:
        if record.is_warm(t):
            warm[str(t.user_attrs[record.WARM_START]).rpartition("#")[0]] += 1
    full_epochs = record.spec_epochs(study) or max(
        (int(t.user_attrs.get(record.EPOCHS_RUN, 0)) for t in main), default=0)
    sign = record.direction_sign(study)
    originals = [t for t in main if record.DUPLICATE_OF not in t.user_attrs]
    continued = record.retried_numbers(originals)  # a lineage counts by its last trial
    finished = [t for t in originals if t.state in record.FINISHED and t.number not in continued]
    complete = record.leaders(study, originals)
    if not main:
        raise UserError(f"study {study.study_name!r} has no trial yet")
    if not complete:
        states = ", ".join(sorted({t.state.name.lower() for t in main}))
        raise UserError(f"study {study.study_name!r} has no complete trial (its trials are: "
                        f"{states}); nothing to report")
    counts = record.count_states(main)
    counts["duplicates"] = len(main) - len(originals)
    counts["replicates"] = sum(record.is_replicate(t) for t in trials)
    counts["warm_start"] = sum(warm.values())
    best = complete[0]
    top = record.leaders(study, originals, pruned=True)[:top_k]
    levels = factors(finished, sign)
    reps = replicates(trials, sign)
    importances, note = _importances(study, complete)
    h2h = head_to_head(study, trials)
    return {
        "study": study.study_name,
        "direction": "maximize" if sign > 0 else "minimize",
        "metric": metric,
        "storage": storage_shown,
        "verdict": h2h_verdict(h2h) if h2h else
        verdict(study.study_name, metric, best, levels, reps, sign) + unequal_note(
            {axis: levels[axis] for axis in AXES[:3]}),
        "n_trials": counts,
        "best": {"value": best.value, "trial_number": best.number,
                 "config": best.user_attrs.get(record.CONFIG, {})},
        "top": [{"trial_number": t.number, "state": record.state_name(t),
                 "value": record.last_value(t),
                 "epochs": t.user_attrs.get(record.EPOCHS_RUN),
                 "wall_time_s": t.user_attrs.get(record.WALL_TIME_S),
                 "config": t.user_attrs.get(record.CONFIG, {}),
                 "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}
                for t in top],
        "factors": levels,
        "rungs": rungs(finished, sign, full_epochs),
        "importances": importances,
        "importances_note": note,
        "gradient_flow": gradient_flow(finished),
        "compute": compute(originals, full_epochs),
        "warm_start": dict(warm),
        "replicates": reps,
        "head_to_head": h2h,
    }

