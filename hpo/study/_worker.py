"""A worker: joins a study by storage URL and name, and runs trials until the budget is met.

The spec travels inside the study (user attribute ``spec``), so a worker needs no file. The
budget is global: a worker stops once the study holds ``n_trials`` finished (complete or
pruned) trials, counted over every worker, so the study overshoots by at most one trial per
worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UserError
from hpo.study._objective import Objective, TrialInterrupted
from hpo.study._samplers import build_pruner, build_sampler
from hpo.study._spec import StudySpec, parse_spec
from hpo.study._storage import open_storage, redact
from hpo.training import pick_device

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StopFlag:
    """Set by the first SIGINT or SIGTERM; the trainer polls it between steps.

    Turning signals into a flag (instead of KeyboardInterrupt at an arbitrary line) means a
    worker never stops halfway through a storage write: the running trial ends at a step
    boundary, is recorded, and the worker exits normally. Later signals are ignored; the
    parent escalates to SIGKILL if a worker does not finish in time.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._event.set())

    def __call__(self) -> bool:
        return self._event.is_set()


class _QuietInterrupts(logging.Filter):
    """Drops Optuna's traceback for trials we interrupted on purpose; their reason is stored."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is TrialInterrupted)


class Budget:
    """Stops this worker once the study has ``n_trials`` finished trials.

    It also stops after as many failed trials, so a config that always crashes cannot keep
    a worker busy forever, and as soon as the worker's stop flag is set.
    """

    def __init__(self, n_trials: int, stop_flag: StopFlag | None = None) -> None:
        self.n_trials = n_trials
        self.stop_flag = stop_flag

    def met(self, study: optuna.Study) -> bool:
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        return len(finished) >= self.n_trials or len(failed) >= self.n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if (self.stop_flag and self.stop_flag()) or self.met(study):
            study.stop()


def load_spec_from_study(
    storage: optuna.storages.BaseStorage, storage_url: str, study_name: str
) -> tuple[optuna.Study, StudySpec]:
    """The study and the spec stored in it; unknown studies and foreign studies fail clearly."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(
            f"storage {redact(storage_url)}: no study named {study_name!r}; "
            f"studies there: {', '.join(names) or 'none'}"
        ) from None
    raw = study.user_attrs.get("spec")
    if not isinstance(raw, dict):
        raise UserError(f"study {study_name!r} has no hpo spec (user attribute 'spec'); "
                        "it was not created by hpo")
    return study, parse_spec(raw, f"study {study_name!r}")


def run_worker(
    storage_url: str,
    study_name: str,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    worker_index: int = 0,
    threads: int | None = None,
) -> None:
    """Runs trials of ``study_name`` until its budget (or ``timeout`` seconds) is spent.

    Args:
        storage_url: Optuna storage URL or journal file path.
        study_name: an existing study created by hpo.
        n_trials: total budget of finished trials; the spec's ``n_trials`` when None.
        timeout: seconds after which this worker starts no new trial.
        worker_index: offsets the sampler seed so that workers do not propose the same trials.
        threads: CPU threads for torch in this process.
    """
    import torch

    optuna.logging.set_verbosity(logging.WARNING)
    logging.getLogger("optuna.study._optimize").addFilter(_QuietInterrupts())
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    stop_flag = StopFlag()
    stop_flag.install()
    if threads:
        torch.set_num_threads(threads)
    storage = open_storage(storage_url)
    _, spec = load_spec_from_study(storage, storage_url, study_name)
    seed = None if spec.seed is None else spec.seed + worker_index
    study = optuna.load_study(
        study_name=study_name, storage=storage,
        sampler=build_sampler(spec.sampler, spec.sampler_options, seed, spec.grid),
        pruner=build_pruner(spec.pruner, spec.pruner_options),
    )
    budget = Budget(n_trials or spec.n_trials, stop_flag)
    if budget.met(study):
        return
    study.optimize(
        Objective(spec, pick_device(), stop_flag),
        timeout=timeout,
        callbacks=[budget],
        catch=(Exception,),
        gc_after_trial=False,
    )


def default_threads(workers: int) -> int:
    """CPU threads per worker so that ``workers`` processes share the cores without contention."""
    return max(1, (os.cpu_count() or 1) // workers)
