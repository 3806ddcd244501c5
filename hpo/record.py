"""What hpo stores on a study and its trials: the attribute names, and the readings of them
that more than one place needs.

The study layer writes these attributes and the review layer reads them; both import the names
from here, so a newcomer who changes what a trial records finds it in one place. Optuna's own
names (``failed_trial``, ``retry_history`` of its retry callback, ``fixed_params`` of
``enqueue_trial``) are listed too, as the places that read them must agree with Optuna.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import TrainConfig

# --- study user attributes
SPEC = "spec"  # the whole spec as written, so later tools need neither the file nor this code
STUDY_UID = "hpo_uid"  # the study's identity; names its checkpoint folder

# --- trial user attributes: what the trial is (kept by a retry)
REPLICATE_OF = "replicate_of"  # number of the trial a replicate retrains
REPLICATE_SEED = "replicate_seed"  # the replicate's training seed
PROMOTED_FROM = "promoted_from"  # a continuation: the paused trial it resumes (asha pruner)
BRACKET = "bracket"  # asha's bracket: how many of the first rungs the configuration skips
LINEAGE = (REPLICATE_OF, REPLICATE_SEED, PROMOTED_FROM, BRACKET)

# --- trial user attributes: how its run went (written afresh by every run)
CONFIG = "config"  # the resolved TrainConfig as a dict
CURVE = "curve"  # per-epoch train_loss, val_loss, val_accuracy
EPOCHS_RUN = "epochs_run"
WALL_TIME_S = "wall_time_s"
DEVICE = "device"
HOST = "host"
WORKER_PID = "worker_pid"
CPU_THREADS = "cpu_threads"
SAMPLER_SEED = "sampler_seed"
OWNER_LOCK = "owner_lock"  # the worker holds the trial's lock file (journal liveness)
STOP_REASON = "stop_reason"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
CODE = "code"  # model / data given by import path: import_path, version, sha256 of the module
TEST_ACCURACY = "test_accuracy"  # replicates only: the one place the test split is read
DUPLICATE_OF = "duplicate_of"  # a sampled repeat of a finished trial, not trained again
WARM_START = "warm_start"  # "<study>#<number>": copied from an earlier study, not trained here
SURPLUS = "surplus"  # asked for after every slot of a head-to-head study was taken; untrained
PAUSED_AT = "paused_at"  # epoch where the asha pruner paused it; a continuation may resume it
# {"steps": optimizer steps so far, "at": Unix time of the last, "timeout_s": its stall limit},
# written by the worker's watch while the trial trains (hpo.storage._stall)
LAST_STEP = "last_step"
# per stage, per epoch: stages, grad_norm, weight_norm, update_ratio (lists of lists); per
# epoch: ratio (stem over last stage) and state (None, "vanishing" or "exploding")
GRADIENTS = "gradients"

# --- trial system attributes (Optuna's names)
FAILED_TRIAL = "failed_trial"  # the first trial of a retry chain
RETRY_HISTORY = "retry_history"  # every earlier trial of the chain, oldest first
FIXED_PARAMS = "fixed_params"  # set by enqueue_trial
PROMOTIONS = "hpo_promotions"  # continuations in the chain (they spend no retry)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trial states by the names every hpo command prints (progress, status, report); "paused" is a
# PRUNED trial that the asha pruner may still promote (it carries ``paused_at``).
STATE_NAMES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
               "paused": TrialState.PRUNED, "failed": TrialState.FAIL,
               "running": TrialState.RUNNING, "waiting": TrialState.WAITING}


def is_replicate(trial: FrozenTrial) -> bool:
    return REPLICATE_OF in trial.user_attrs


def is_warm(trial: FrozenTrial) -> bool:
    """A warm-start trial: another study's result that seeds the sampler, not trained here."""
    return WARM_START in trial.user_attrs


def state_name(trial: FrozenTrial) -> str:
    """The trial's state by :data:`STATE_NAMES`."""
    if trial.state == TrialState.PRUNED and PAUSED_AT in trial.user_attrs:
        return "paused"
    return next(name for name, state in STATE_NAMES.items() if state == trial.state)


def count_states(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials per state, by :data:`STATE_NAMES`; a paused trial that a continuation carries on
    is not counted (its lineage is one configuration, counted by its last trial)."""
    continued = retried_numbers(trials)
    names = [state_name(t) for t in trials
             if not (t.state == TrialState.PRUNED and t.number in continued)]
    return {name: names.count(name) for name in STATE_NAMES}


def split_replicates(trials: Sequence[FrozenTrial]) -> tuple[list[FrozenTrial], int]:
    """(the study's own trials, the number of finished replicates): how progress, status and
    report count, so that they agree. A replicate still queued or running counts as work in
    progress with the study's own trials."""
    own = [t for t in trials if not is_warm(t) and (not is_replicate(t) or t.state not in
           (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))]
    return own, sum(is_replicate(t) for t in trials) - sum(is_replicate(t) for t in own)


def retry_history(trial: FrozenTrial) -> list[int]:
    return list(trial.system_attrs.get(RETRY_HISTORY, []))


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials that a later trial retries (their chain went on)."""
    return {n for t in trials for n in retry_history(t)}


def direction_sign(study: optuna.Study) -> float:
    """+1 when higher values are better (maximize), -1 otherwise: ``sign * value`` is a score."""
    return 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0


def gradients_of(flows: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Per-epoch gradient-flow figures (the trainer's ``EpochMetrics.flow``) as the compact
    ``gradients`` attribute: stage names once, then one list per figure, one row per epoch."""
    flows = [f for f in flows if f]
    if not flows:
        return None
    return {"stages": flows[0]["stages"],
            **{k: [f.get(k) for f in flows] for k in ("grad_norm", "weight_norm",
                                                      "update_ratio", "ratio", "state")}}


def last_value(trial: FrozenTrial) -> float | None:
    """The final value, or for a pruned trial the value it last reported."""
    if trial.value is not None:
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def ranked(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None,
           states: tuple[TrialState, ...] = (TrialState.COMPLETE,),
           replicates: bool = False) -> list[FrozenTrial]:
    """Trials in ``states`` best first by :func:`last_value` (ties: lower number first);
    replicates left out unless asked for (they repeat a configuration already listed)."""
    sign = direction_sign(study)
    pool = study.get_trials(deepcopy=False) if trials is None else trials
    chosen = [t for t in pool if t.state in states and last_value(t) is not None
              and (replicates or not is_replicate(t)) and not is_warm(t)]
    return sorted(chosen, key=lambda t: (-sign * last_value(t), t.number))  # type: ignore


def leaders(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None, *,
            pruned: bool = False) -> list[FrozenTrial]:
    """The study's leaders, best first: the one definition of "the top" that progress, status,
    the report, replicate, export and checkpoint retention share.

    Complete trials that this study trained: no duplicate (``duplicate_of``: a reused result,
    its original is listed), no replicate, no warm-start trial. With ``pruned``, pruned and
    paused trials follow, by their last value, each lineage once (a paused trial that a
    continuation carries on is left out): for tables that show partial results and say so,
    never for exports, which must carry a full run's metric.
    """
    pool = study.get_trials(deepcopy=False) if trials is None else list(trials)
    own = [t for t in pool if DUPLICATE_OF not in t.user_attrs]
    top = ranked(study, own)
    if pruned:
        continued = retried_numbers(pool)
        top += [t for t in ranked(study, own, states=(TrialState.PRUNED,))
                if t.number not in continued]
    return top


def config_of(trial: FrozenTrial) -> TrainConfig | None:
    """The trial's resolved config (``config``), or None when it has none or one this version
    cannot read (a study written by another hpo)."""
    return parse_config(trial.user_attrs.get(CONFIG))


def parse_config(raw: Any) -> TrainConfig | None:
    """A stored config dict (a trial's ``config``, a report's copy of it) as a TrainConfig, or
    None when it is not one this version can read."""
    if not isinstance(raw, dict):
        return None
    try:
        return TrainConfig.from_dict(raw)
    except (TypeError, ValueError):
        return None


def stored_spec(study: optuna.Study) -> dict[str, Any]:
    spec = study.user_attrs.get(SPEC)
    return spec if isinstance(spec, dict) else {}


def spec_metric(study: optuna.Study) -> str:
    """The metric the study optimizes, from its stored spec (val_accuracy when it has none)."""
    return str(stored_spec(study).get("study", {}).get("metric", "val_accuracy"))


def spec_epochs(study: optuna.Study) -> int | None:
    """The epochs of a full trial, from the stored spec (None when it has none)."""
    epochs = stored_spec(study).get("training", {}).get("epochs")
    return int(epochs) if epochs else None
