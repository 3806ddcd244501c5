"""A worker process: joins a study by storage URL and name, runs trials until the budget is met.

The spec travels inside the study (user attribute ``spec``), so a worker needs no file. The
budget is global: a worker stops once the study holds ``n_trials`` finished (complete or
pruned) trials, counted over every worker, so the study overshoots by at most one trial per
worker. Before leaving, a worker runs every queued retry and, on heartbeat storages, waits for
running trials to finish or go stale (then fails and retries them) and fails orphans (trials
whose creation reply was lost, see :meth:`ResilientRDBStorage.fail_orphans`), so a finished
study holds no RUNNING and no WAITING trial.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._backends import heartbeat_enabled, open_storage, release
from hpo.storage._ownership import TrialLocks, requeue_unowned
from hpo.storage._rdb import LATE_RESULT_DROPPED, ResilientRDBStorage
from hpo.storage._stall import requeue_stalled
from hpo.study._checkpoints import CheckpointStore, artifact_store
from hpo.study._compare import (
    enqueue_finalists,
    inner_pruner,
    level_views,
    slots_open,
    split_by_level,
)
from hpo.study._objective import (
    DuplicateOfRunning,
    Objective,
    TrialAbandoned,
    TrialInterrupted,
)
from hpo.study._promotion import AshaPruner, promote_due
from hpo.study._samplers import SAMPLERS, build_pruner, build_sampler
from hpo.study._spec import StudySpec, load_spec_from_study
from hpo.study._tracking import Tracking, build_tracking
from hpo.training import pick_device
from hpo.worker._plan import WorkerPlan
from hpo.worker._signals import EXIT_OUT_OF_MEMORY, StopFlag
from hpo.worker._watch import StepWatch

_log = logging.getLogger("hpo.worker")


class _QuietExpected(logging.Filter):
    """Drops Optuna's warnings for trials stopped on purpose (their reason is stored), and the
    "failed with value None" line that repeats the warning before it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] in (TrialInterrupted, TrialAbandoned,
                                                      DuplicateOfRunning):
            return False
        return not record.getMessage().endswith("failed with value None.")


class Budget:
    """Stops this worker's optimize loop once the study has ``n_trials`` finished trials.

    A lineage counts once: a paused trial that a continuation carries on is not counted (the
    continuation is, when it finishes). Also once as many trials failed for good (not retried:
    a config that always crashes must not keep workers busy forever), and as soon as the
    worker's stop flag is set. A head-to-head study (``slots``) is met once no queued slot is
    waiting or training: its trials are exactly the slots queued at its creation.
    """

    def __init__(self, n_trials: int, stop_flag: StopFlag | None = None,
                 slots: bool = False) -> None:
        self.n_trials = n_trials
        self.stop_flag = stop_flag
        self.slots = slots

    def met(self, study: optuna.Study) -> bool:
        trials = study.get_trials(deepcopy=False)
        if self.slots:
            return not slots_open(trials)
        retried = record.retried_numbers(trials)  # also paused trials that were promoted
        finished = sum(t.state in record.FINISHED and not record.is_replicate(t)
                       and not record.is_warm(t) and t.number not in retried for t in trials)
        errors = sum(t.state == TrialState.FAIL and t.number not in retried
                     and record.DUPLICATE_OF not in t.user_attrs
                     and record.SURPLUS not in t.user_attrs for t in trials)
        return finished >= self.n_trials or errors >= self.n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if (self.stop_flag and self.stop_flag()) or self.met(study):
            study.stop()


def run_worker(plan: WorkerPlan, stop_flag: StopFlag | None = None) -> int:
    """Runs trials of ``plan.study_name`` until its budget (or ``plan.timeout``) is spent.

    ``stop_flag`` is the process's signal flag, when the caller installed it before its
    imports; one is installed here otherwise. Returns 0, or :data:`EXIT_OUT_OF_MEMORY` when a
    trial ran out of device memory (it is requeued).
    """
    import torch

    optuna.logging.set_verbosity(logging.WARNING)
    logging.getLogger("optuna.study._optimize").addFilter(_QuietExpected())
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if stop_flag is None:
        stop_flag = StopFlag()
        stop_flag.install()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    plain = open_storage(plan.storage_url, checked=True)  # by the command that started us
    created, spec = load_spec_from_study(plain, plan.storage_url, plan.study_name)
    uid = created.user_attrs.get(record.STUDY_UID)
    release(plain)  # reopened below with heartbeats; nothing reads through it again
    if plan.stall_timeout is not None:
        spec = dataclasses.replace(spec, liveness=dataclasses.replace(
            spec.liveness, stall_timeout=plan.stall_timeout))
    if plan.track:
        spec = dataclasses.replace(spec, track=spec.track.also(plan.track))
    seed = sampler_seed(spec.seed, plan.seeded, shared=SAMPLERS[spec.sampler].shared_seed)
    worker = _Worker(spec, open_storage(plan.storage_url, spec.liveness, checked=True),
                     plan.study_name, stop_flag, seed, plan.index)
    if plan.checkpoint_dir is not None:
        worker.keep_checkpoints(Path(plan.checkpoint_dir), uid)
    tracking = build_tracking(spec.track, plan.study_name,
                              Path(plan.checkpoint_dir) if plan.checkpoint_dir else None)
    try:
        return worker.run(plan.n_trials or spec.n_trials, plan.timeout, tracking)
    finally:
        if tracking is not None:
            tracking.close()


class _Worker:
    """One process's trial loop over a study: which trial next, promotions, checkpoints."""

    def __init__(self, spec: StudySpec, storage: optuna.storages.BaseStorage, name: str,
                 stop_flag: StopFlag, seed: int | None, index: int = 0) -> None:
        self.spec, self.storage, self.stop_flag, self.seed = spec, storage, stop_flag, seed
        self.index = index
        sampler = build_sampler(spec.sampler, spec.sampler_options, seed, spec.grid)
        pruner = build_pruner(spec.pruner, spec.pruner_options)
        if spec.compare is not None:
            sampler, pruner = split_by_level(
                spec.compare, lambda s: build_sampler(spec.sampler, spec.sampler_options, s),
                seed, pruner)
        self.study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                       pruner=pruner)
        self.study_id = storage.get_study_id_from_name(name)
        self.store: CheckpointStore | None = None
        self.artifacts: optuna.artifacts.FileSystemArtifactStore | None = None
        self.locks: TrialLocks | None = None

    def keep_checkpoints(self, root: Path, uid: str | None) -> None:
        """Checkpoints (and figures, and journal ownership locks) under ``root``."""
        self.store = CheckpointStore(root, self.study.study_name, uid)
        self.store.check_writable()
        self.artifacts = artifact_store(root)
        self.locks = TrialLocks(self.store.dir)

    def run(self, n_trials: int, timeout: float | None, tracking: Tracking | None = None) -> int:
        spec, study = self.spec, self.study
        self.budget = Budget(n_trials, self.stop_flag, slots=spec.compare is not None)
        watch = StepWatch(self.stop_flag, study, spec.liveness, self.index)
        objective = Objective(spec, pick_device(), watch, self.store, spec.liveness,
                              self.artifacts, self.locks, sampler_seed=self.seed,
                              tracking=tracking)

        def watched(trial: optuna.Trial) -> float:
            with watch.running(trial):
                return objective(trial)

        asha = inner_pruner(study.pruner)
        self.asha = asha if self.store is not None and isinstance(asha, AshaPruner) \
            and asha.promotion else None
        callbacks: list[Any] = [self.promote, self.budget]
        if self.store is not None:
            callbacks.append(lambda s, t: self.store.retain(s, spec.keep_checkpoints))
        if self.locks is not None:
            callbacks.append(lambda s, t: self.locks.release(t.number))  # once it is stored
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stop_flag() and not objective.out_of_memory:
            queued_only = self.next_step()
            if queued_only is None:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self.promote(study)
            try:
                study.optimize(watched, n_trials=1 if queued_only else None, timeout=left,
                               callbacks=callbacks, catch=(Exception,), gc_after_trial=False)
            except ValueError as e:
                if not str(e).startswith("Cannot tell a"):
                    raise
                if self.locks is not None:
                    self.locks.release_all()  # Optuna skips the callbacks of such a trial
                _log.warning("%s (%s)", LATE_RESULT_DROPPED, e)
        return EXIT_OUT_OF_MEMORY if objective.out_of_memory else 0

    def next_step(self) -> bool | None:
        """Tidies the study (stale, orphaned and unowned trials; a head-to-head study's
        finalists) and says what to run: None to stop, True for queued trials only, False
        for sampled ones too. Waits, briefly, while only others' trials are running."""
        study, spec = self.study, self.spec
        while not self.stop_flag():
            optuna.storages.fail_stale_trials(study)
            requeue_stalled(study, spec.liveness)
            if isinstance(self.storage, ResilientRDBStorage):
                self.storage.fail_orphans(self.study_id)
            if self.locks is not None and not heartbeat_enabled(self.storage):
                requeue_unowned(study, self.locks, spec.liveness)
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if spec.compare is not None and not waiting and \
                    enqueue_finalists(study, spec.compare, spec.base.seed):
                continue
            # a head-to-head study runs queued trials only: asking for more would add a trial
            # outside every level's budget
            queued_only = spec.compare is not None or self.budget.met(study)
            if waiting or not queued_only:
                return queued_only
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running or not heartbeat_enabled(self.storage):
                return None
            # let them finish or go stale; a short poll: a worker that is done should not
            # idle a whole heartbeat interval (30 s by default) after the last trial ends
            time.sleep(min(spec.liveness.heartbeat_interval, 2.0))
        return None

    def promote(self, study: optuna.Study, _: FrozenTrial | None = None) -> None:
        """Queues a due promotion before the next trial is asked for (paused trials resume
        from their checkpoints, so promotion needs the checkpoint store); in a head-to-head
        study, within each level."""
        if self.asha is not None and not self.budget.met(study):
            for view in level_views(study, self.spec.compare):
                promote_due(view, self.asha)  # type: ignore[arg-type]


def sampler_seed(spec_seed: int | None, seeded: bool, shared: bool = False) -> int | None:
    """The spec's seed for the one seeded process, else a fresh one from OS entropy.

    Seeding every process with ``seed + worker index`` made each new process replay an
    earlier one's stream: a relaunched or extended study, and worker 0 of every machine,
    proposed the very trials already run. A sampler whose seed must be ``shared`` (the grid's
    order) gets the spec's seed, or 0, in every process.
    """
    if shared:
        return spec_seed or 0
    if spec_seed is None:
        return None
    return spec_seed if seeded else int.from_bytes(os.urandom(4), "little")


def default_threads(workers: int) -> int:
    """CPU threads per worker so that ``workers`` processes share the cores without contention.

    The cores this process may run on (Slurm's ``--cpus-per-task``, a container's cpuset), not
    the machine's: on a shared node ``os.cpu_count()`` would oversubscribe the allocation.
    ``OMP_NUM_THREADS``, when set, caps it, as it caps every OpenMP program: whoever shares the
    cores with other work says so there. Oversubscribed OpenMP threads spin against each other:
    two processes of 2 threads on 2 busy cores took 2.4x the CPU per epoch of 1 thread each.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share
