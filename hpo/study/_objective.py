"""The objective: one Optuna trial -> one resolved config -> one training run.

Everything a later reader needs goes into the trial's user attributes: ``config`` (the full
resolved configuration), ``curve`` (per-epoch losses and accuracy), ``epochs_run``,
``wall_time_s``, ``device``, ``host``, ``worker_pid``, ``stop_reason`` and, for a retried
trial, ``resumed_from_epoch`` (epochs already finished in the checkpoint it resumed from; it
trained from epoch ``resumed_from_epoch + 1`` on).

A run stopped by the pruner or by a diverging loss ends PRUNED with its reason; an exception
ends FAIL with its reason and the worker carries on. A run stopped by SIGINT/SIGTERM saves a
checkpoint at the step boundary, ends FAIL and queues its retry, which resumes from there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._lineage import Liveness, requeue
from hpo.storage._ownership import TrialLocks
from hpo.study._checkpoints import CheckpointStore
from hpo.study._compare import inner_pruner
from hpo.study._notes import attach, lineage
from hpo.study._promotion import AshaPruner, duplicate_promotion
from hpo.study._replicate import duplicate_replicate
from hpo.study._space import suggest_config
from hpo.study._spec import StudySpec
from hpo.study._tracking import RunEnd, RunStart, Tracking
from hpo.training import (
    Data,
    EpochMetrics,
    TrainConfig,
    load_data,
    train,
)
from hpo.training._imported import code_of

_log = logging.getLogger("hpo.worker")


class TrialInterrupted(Exception):
    """The worker was asked to stop; the trial is checkpointed and queued for a retry."""


class TrialAbandoned(Exception):
    """Another worker declared this trial stale and retried it; this run must write nothing."""


class Objective:
    """Callable for ``Study.optimize``; loads the data once per worker process.

    Args:
        spec: the study's spec.
        device: where trials train.
        should_stop: the worker's stop flag, polled by the trainer between steps.
        checkpoints: where trials save and resume; None disables checkpoints.
        liveness: retry settings for requeueing interrupted trials.
        artifacts: where trials' figures go (the dashboard serves them).
        locks: ownership locks of running trials (storages without heartbeats rely on them);
            the worker releases each after its trial's result is stored.
        sampler_seed: the seed of this process's sampler, recorded on each trial it proposes.
        tracking: the experiment trackers each trial's run is copied to (None: none).
    """

    def __init__(self, spec: StudySpec, device: torch.device,
                 should_stop: Callable[[], bool] | None = None,
                 checkpoints: CheckpointStore | None = None,
                 liveness: Liveness | None = None,
                 artifacts: optuna.artifacts.FileSystemArtifactStore | None = None,
                 locks: TrialLocks | None = None, sampler_seed: int | None = None,
                 tracking: Tracking | None = None) -> None:
        self.spec = spec
        self.device = device
        self.should_stop = should_stop
        self.checkpoints = checkpoints
        self.liveness = liveness or Liveness()
        self.artifacts = artifacts
        self.locks = locks
        self.sampler_seed = sampler_seed
        self.tracking = tracking
        self._tracked: set[int] = set()  # trials whose run was started
        self.out_of_memory = False  # set when a trial ran out of device memory
        self._data: Data | None = None
        self._data_with_test: Data | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        state, value = "FAIL", None
        try:
            value = self._run(trial)
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this trial stale and retried it while it ran: nothing of
            # this run may be written (the worker says so in one line, see run_worker).
            raise TrialAbandoned(trial.number) from None
        finally:
            if trial.number in self._tracked:
                self._tracked.discard(trial.number)
                self._end_run(trial, state, value)

    def _run(self, trial: optuna.Trial) -> float:
        if self.locks is not None:  # before anything names this process as the trial's owner
            self.locks.hold(trial)
        spec = self.spec
        if spec.compare is not None and _outside_slots(trial, spec.compare.axis):
            _surplus(trial)
        config = suggest_config(trial, spec.space, spec.base)
        # A replicate (hpo replicate) reruns a finished trial's params with a new seed, is never
        # pruned, and is the one place where the test split is evaluated.
        replicate = record.REPLICATE_OF in trial.user_attrs
        if replicate:
            config = dataclasses.replace(config, seed=int(trial.user_attrs[record.REPLICATE_SEED]))
        trial.set_user_attr(record.CONFIG, config.to_dict())
        code = code_of(config.model.name, config.data.name)
        if code:
            trial.set_user_attr(record.CODE, code)
        twin = None if spec.repeats else _finished_twin(trial)
        if twin is not None:
            return _reuse(trial, twin)
        earlier = duplicate_promotion(trial) if not replicate else duplicate_replicate(trial)
        if earlier is not None:
            return _reuse_queued(trial, earlier)
        self._sign(trial)
        if self.tracking is not None:
            self.tracking.start(self._run_start(trial, config.to_dict(), replicate))
            self._tracked.add(trial.number)
        curve: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
        self._flows: list[dict[str, Any]] = []
        on_epoch = self._on_epoch(trial, curve, prunable=not replicate)
        save = None
        if self.checkpoints is not None:
            save = lambda state: self.checkpoints.save(trial.number, state)  # noqa: E731
        try:
            resume = self._resume_state(trial, config)
            if resume:
                trial.set_user_attr(record.RESUMED_FROM_EPOCH, len(resume["history"]))
                for m in resume["history"]:  # the checkpoint is the truth; fill missing reports
                    self._record_epoch(trial, EpochMetrics(**m), curve)
            result = train(config, self._load_data(replicate), on_epoch, self.device,
                           self.should_stop, resume=resume, save_state=save)
        except torch.cuda.OutOfMemoryError:
            # Too many trials share this GPU: requeue the trial (never lost) and let this
            # worker process end, so that the GPU runs one trial fewer from now on.
            self.out_of_memory = True
            self._requeue(trial, f"out of memory on {self.device}; queued to resume at lower "
                                 "packing")
            raise TrialInterrupted("out of memory") from None
        except TrialAbandoned:
            raise
        except Exception as e:
            trial.set_user_attr(record.STOP_REASON, f"error: {type(e).__name__}: {e}")
            raise
        trial.set_user_attr(record.EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(record.WALL_TIME_S, round(result.wall_time_s, 3))
        if result.status == "interrupted":
            self._requeue(trial, f"{result.stop_reason}; checkpointed and queued to resume")
            raise TrialInterrupted(result.stop_reason)
        trial.set_user_attr(record.STOP_REASON, result.stop_reason)
        if result.test_accuracy is not None:
            trial.set_user_attr(record.TEST_ACCURACY, result.test_accuracy)
        try:
            about = lineage(trial.user_attrs, self._retry_history(trial))
            attach(trial, self.artifacts, config.to_dict(), curve, result.stop_reason,
                   spec.metric, about, record.gradients_of(self._flows))
        except OSError as e:  # the figure is a convenience; the result must still be stored
            _log.warning("trial %d: its learning-curve figure was not stored (%s)",
                         trial.number, e.strerror or e)
        if result.status != "completed":
            raise optuna.TrialPruned(result.stop_reason)
        return float(getattr(result.history[-1], spec.metric))

    def _sign(self, trial: optuna.Trial) -> None:
        """Records who runs the trial: the sampler's seed, threads, host, process, device."""
        if self.sampler_seed is not None:
            trial.set_user_attr(record.SAMPLER_SEED, self.sampler_seed)
        trial.set_user_attr(record.CPU_THREADS, torch.get_num_threads())
        trial.set_user_attr(record.HOST, socket.gethostname())
        trial.set_user_attr(record.WORKER_PID, os.getpid())
        trial.set_user_attr(record.DEVICE, str(self.device))

    def _on_epoch(self, trial: optuna.Trial, curve: dict[str, list[float]],
                  prunable: bool) -> Callable[[EpochMetrics], str | None]:
        """The trainer's callback: reports the epoch and asks the pruner (the asha pruner's
        stops are pauses); returns the reason to stop, or None."""
        spec = self.spec
        asha = inner_pruner(trial.study.pruner)
        pauses = isinstance(asha, AshaPruner) and asha.promotion

        def on_epoch(m: EpochMetrics) -> str | None:
            try:
                value = self._record_epoch(trial, m, curve)
                if prunable and trial.should_prune():
                    if pauses:
                        trial.set_user_attr(record.PAUSED_AT, m.epoch)
                        return (f"paused after epoch {m.epoch} ({spec.metric} {value:.4f}): "
                                "outside the best 1/eta of its rung for now; resumes from its "
                                "checkpoint if later trials rank it there")
                    return f"pruned by the {spec.pruner} pruner after epoch {m.epoch} " \
                           f"({spec.metric} {value:.4f})"
            except optuna.exceptions.UpdateFinishedTrialError:
                raise TrialAbandoned(trial.number) from None
            return None

        return on_epoch

    def _load_data(self, with_test: bool) -> Data:
        if with_test:
            if self._data_with_test is None:
                self._data_with_test = load_data(self.spec.base.data, with_test=True)
            return self._data_with_test
        if self._data is None:
            self._data = load_data(self.spec.base.data)
        return self._data

    def _record_epoch(self, trial: optuna.Trial, m: EpochMetrics,
                      curve: dict[str, list[float]]) -> float:
        value = float(getattr(m, self.spec.metric))
        with warnings.catch_warnings():  # a retry inherits the epochs reported before it
            warnings.filterwarnings("ignore", message="The reported value is ignored")
            trial.report(value, m.epoch)
        for key, values in curve.items():
            values.append(getattr(m, key))
        trial.set_user_attr(record.CURVE, curve)
        trial.set_user_attr(record.EPOCHS_RUN, m.epoch)
        if self.tracking is not None:
            self.tracking.epoch(trial.number, m.epoch, {k: getattr(m, k) for k in (
                "train_loss", "val_loss", "val_accuracy", "lr")})
        if m.flow:
            self._flows.append(m.flow)
            trial.set_user_attr(record.GRADIENTS, record.gradients_of(self._flows))
        return value

    def _run_start(self, trial: optuna.Trial, config: dict[str, Any], replicate: bool
                   ) -> RunStart:
        """What a tracker needs to open ``trial``'s run: what kind of run, and which it
        continues (the previous trial of its chain, or the trial a replicate retrains)."""
        start = RunStart(trial.number, dict(trial.params), config)
        history = self._retry_history(trial)
        if replicate:
            start.kind, start.continues = "replicate", int(trial.user_attrs[record.REPLICATE_OF])
        elif history:
            storage, study_id = trial.storage, trial.study._study_id  # noqa: SLF001
            before = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(
                study_id, history[-1]))
            start.continues, start.previous_curve = before.number, before.user_attrs.get(
                record.CURVE)
            start.kind = "continuation" if record.PAUSED_AT in before.user_attrs else "retry"
        return start

    def _end_run(self, trial: optuna.Trial, state: str, value: float | None) -> None:
        """Closes ``trial``'s tracked run with its stored reason and curve."""
        assert self.tracking is not None
        try:
            attrs = trial.storage.get_trial_user_attrs(trial._trial_id)  # noqa: SLF001
        except Exception:  # noqa: BLE001 - the storage is down: end the run with what we know
            attrs = {}
        self.tracking.end(RunEnd(trial.number, state, str(attrs.get(record.STOP_REASON, "")),
                                 value, dict(attrs.get(record.CURVE, {}))))

    def _requeue(self, trial: optuna.Trial, reason: str) -> None:
        """Queues the trial's retry (it resumes from the checkpoint) and stops this worker's
        loop; the trial itself ends FAIL with ``reason`` when the objective raises."""
        trial.set_user_attr(record.STOP_REASON, reason)
        requeue(trial.study, trial.number, self.liveness, fail=False)
        trial.study.stop()

    @staticmethod
    def _retry_history(trial: optuna.Trial) -> list[int]:
        # Optuna 5's Trial has no system_attrs; the storage holds the retry history.
        system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
        return list(system.get(record.RETRY_HISTORY, []))

    def _resume_state(self, trial: optuna.Trial, config: TrainConfig) -> dict[str, Any] | None:
        if self.checkpoints is None:
            return None
        history = self._retry_history(trial)
        if not history:
            return None
        state, path = self.checkpoints.load(history, config.to_dict())
        if state is None:
            _log.warning("trial %d retries trials %s but no usable checkpoint of theirs is "
                         "left; it starts afresh", trial.number, history)
        else:
            _log.info("trial %d resumes from %s", trial.number, path)
        return state


def _finished_twin(trial: optuna.Trial) -> FrozenTrial | None:
    """The earliest finished (else running) trial with exactly ``trial``'s parameters, for a
    sampled trial.

    Enqueued trials (retries, replicates, ``enqueue_trial``) repeat parameters on purpose and
    are never matched; a twin that is itself a duplicate stands for its original. A running
    twin is one that another worker drew at the same moment (a grid handed out twice).
    """
    if not trial.params:  # nothing is searched: repeating the run is the point of the study
        return None
    system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
    if record.FIXED_PARAMS in system or record.RETRY_HISTORY in system:
        return None
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    twins = [t for t in trial.study.get_trials(deepcopy=False, states=states)
             if t.params == trial.params and t.number != trial.number
             and record.REPLICATE_OF not in t.user_attrs and not record.is_warm(t)
             and not (t.state == TrialState.RUNNING and (t.number > trial.number or
                                                         record.DUPLICATE_OF in t.user_attrs))]
    if not twins:
        return None
    first = min(twins, key=lambda t: (list(states).index(t.state), t.number))
    original = first.user_attrs.get(record.DUPLICATE_OF, first.number)
    return next((t for t in twins if t.number == original), first)


class DuplicateOfRunning(Exception):
    """This trial ends FAIL, untrained: another worker trains its parameters now, or (a
    surplus trial) it belongs to no slot. Samplers ignore failed trials, so the configuration
    is not marked bad."""


def _reuse_queued(trial: optuna.Trial, earlier: int) -> float:
    """Ends a continuation or replicate that another worker queued too, untrained: ``earlier``
    runs it."""
    what = (f"promotion of trial {trial.user_attrs[record.PROMOTED_FROM]}"
            if record.PROMOTED_FROM in trial.user_attrs else
            f"replicate of trial {trial.user_attrs[record.REPLICATE_OF]} (seed "
            f"{trial.user_attrs[record.REPLICATE_SEED]})")
    reason = f"duplicate {what}: trial {earlier} runs it, not trained again"
    trial.set_user_attr(record.DUPLICATE_OF, earlier)
    trial.set_user_attr(record.EPOCHS_RUN, 0)
    trial.set_user_attr(record.STOP_REASON, reason)
    raise DuplicateOfRunning(reason)


def _outside_slots(trial: optuna.Trial, axis: str) -> bool:
    """A head-to-head study's trial that no queued slot fixed the level of: another worker took
    the last slot between this worker's look at the queue and its ask."""
    system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
    return axis not in (system.get(record.FIXED_PARAMS) or {})


def _surplus(trial: optuna.Trial) -> None:
    reason = ("surplus: every slot of the head-to-head study was taken when this trial was "
              "asked for; not trained (it counts for no level)")
    trial.set_user_attr(record.SURPLUS, True)
    trial.set_user_attr(record.EPOCHS_RUN, 0)
    trial.set_user_attr(record.STOP_REASON, reason)
    raise DuplicateOfRunning(reason)


def _reuse(trial: optuna.Trial, twin: FrozenTrial) -> float:
    """Ends ``trial`` with ``twin``'s outcome, untrained (the Optuna FAQ's recipe)."""
    verb = {TrialState.COMPLETE: "its result is reused", TrialState.PRUNED:
            "its pruning is reused", TrialState.RUNNING: "it is being trained"}[twin.state]
    reason = f"duplicate of trial {twin.number}: {verb}, not trained again"
    trial.set_user_attr(record.DUPLICATE_OF, twin.number)
    trial.set_user_attr(record.EPOCHS_RUN, 0)
    trial.set_user_attr(record.STOP_REASON, reason)
    if twin.state == TrialState.RUNNING:
        raise DuplicateOfRunning(reason)
    if twin.state != TrialState.COMPLETE:
        raise optuna.TrialPruned(reason)
    return float(twin.value)
