"""A trial's chain: retries of a failed or interrupted trial and continuations of a paused one.

Every member of a chain carries the chain's lineage (``failed_trial``: its first trial,
``retry_history``: every trial of it, as Optuna's ``RetryHeartbeatStaleTrialCallback`` writes
them), so it resumes from the chain's checkpoint; the budget, the report and the dashboard
count a chain once, by its last trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record


class Annotates(Protocol):
    """A storage that can write the one attribute a finished trial may still get (the resilient
    database storage of :mod:`hpo.storage._backends`)."""

    def annotate_finished(self, trial_id: int, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class Liveness:
    """Heartbeat settings (RDB storages only; Optuna has no heartbeat elsewhere).

    Attributes:
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a trial is declared stale.
        max_retry: how many times a stale (or preempted) trial is retried.
        stall_timeout: seconds without an optimizer step after which a running trial is
            declared stalled (any storage); None: automatic, from the trial's own step times
            (see :func:`hpo.storage._stall.automatic_timeout`).
    """

    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 3
    stall_timeout: float | None = None

    def retry_callback(self) -> RetryStale:
        """What Optuna calls for a trial its heartbeat check failed: queue its retry."""
        return RetryStale(self)


def continue_chain(storage: optuna.storages.BaseStorage, study_id: int, trial: FrozenTrial,
                   extra: dict[str, Any] | None = None, promotion: bool = False) -> int:
    """Queues a WAITING trial that carries on ``trial``'s chain and returns its number.

    The new trial has the same parameters, the epochs ``trial`` reported and its lineage
    (``failed_trial`` names the first trial of the chain, ``retry_history`` every trial of it,
    as Optuna's ``RetryHeartbeatStaleTrialCallback`` writes them), so it resumes from the
    chain's checkpoint. It does not inherit how ``trial``'s run went (epochs_run, stop_reason,
    device, ...): its own run writes those afresh. ``extra``: user attributes of the new trial;
    ``promotion``: it continues a paused trial (counted apart from retries).
    """
    history = [*trial.system_attrs.get(record.RETRY_HISTORY, []), trial.number]
    promotions = int(trial.system_attrs.get(record.PROMOTIONS, 0)) + promotion
    template = optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={**{k: trial.user_attrs[k] for k in record.LINEAGE if k in trial.user_attrs},
                    **(extra or {})},
        system_attrs={**trial.system_attrs,
                      record.FAILED_TRIAL: trial.system_attrs.get(record.FAILED_TRIAL,
                                                                   trial.number),
                      record.RETRY_HISTORY: history, record.PROMOTIONS: promotions},
        intermediate_values=trial.intermediate_values,
    )
    trial_id = storage.create_new_trial(study_id, template_trial=template)  # Study.add_trial
    return storage.get_trial_number_from_id(trial_id)


def retry(storage: optuna.storages.BaseStorage, study_id: int, trial: FrozenTrial,
          liveness: Liveness) -> int | None:
    """Queues a retry of the failed ``trial`` (see :func:`continue_chain`) and returns its
    number; None when ``max_retry`` retries are spent (promotions in the chain spend none)."""
    history = trial.system_attrs.get(record.RETRY_HISTORY, [])
    if len(history) + 1 - int(trial.system_attrs.get(record.PROMOTIONS, 0)) > liveness.max_retry:
        return None
    return continue_chain(storage, study_id, trial)


class RetryStale:
    """The heartbeat-stale callback: queues the retry and says why the trial failed.

    A stale trial was failed by Optuna while its run was silent, so it carries no
    ``stop_reason``; this writes ``no heartbeat for N s on host H; retried as trial M`` on it
    (the storage writes that one attribute on a finished trial, see
    :meth:`hpo.storage._rdb.ResilientRDBStorage.annotate_finished`).
    """

    def __init__(self, liveness: Liveness) -> None:
        self.liveness = liveness
        self.storage: Annotates | None = None  # set once the storage exists

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        number = retry(study._storage, study._study_id, trial, self.liveness)  # noqa: SLF001
        if self.storage is None or record.STOP_REASON in trial.user_attrs:
            return
        host = trial.user_attrs.get(record.HOST, "unknown")
        then = f"retried as trial {number}" if number is not None else \
            f"not retried: its {self.liveness.max_retry} retries are spent"
        self.storage.annotate_finished(
            trial._trial_id, record.STOP_REASON,  # noqa: SLF001
            f"no heartbeat for {self.liveness.grace_period} s on host {host}; {then}")


def requeue(study: optuna.Study, number: int, liveness: Liveness, *, reason: str | None = None,
            fail: bool = True) -> int | None:
    """Queues a retry of trial ``number`` (and marks it FAIL), as a stale heartbeat would.

    Used for preempted trials (SIGTERM; their own objective then ends them FAIL, so ``fail`` is
    False) and for trials whose local worker process died, so that every interrupted trial
    resumes from its checkpoint the same way. Returns the number of the retry, or None when
    ``max_retry`` is spent or another process failed the trial first.
    """
    storage = study._storage  # noqa: SLF001 - the study's own storage, as Optuna's callback uses
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if fail:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            return None
        try:
            if reason:
                storage.set_trial_user_attr(trial_id, record.STOP_REASON, reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return None  # someone else (a heartbeat check) already failed and retried it
    return retry(storage, study._study_id, storage.get_trial(trial_id), liveness)
