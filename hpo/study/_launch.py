"""``hpo launch``: create or resume a study, run local worker processes, watch the progress.

Workers are separate processes (spawned, so each initializes torch cleanly) running the same
:func:`run_worker` that ``hpo worker`` runs on other machines. The parent only watches the
storage and prints progress; on Ctrl-C it lets the workers close their trials and marks any
trial a dead worker left RUNNING as FAIL, so the study never keeps a zombie.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import optuna
from optuna.trial import TrialState

from hpo.errors import UserError
from hpo.study._spec import StudySpec
from hpo.study._storage import open_storage, redact
from hpo.study._worker import default_threads, run_worker


def create_or_resume(
    spec: StudySpec, storage: optuna.storages.BaseStorage, storage_url: str, study_name: str
) -> optuna.Study:
    """Creates the study with its spec stored in it, or returns the existing one.

    Resuming with a different spec would mix two experiments in one study, so it is refused.
    """
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction=spec.direction, load_if_exists=True
    )
    stored = study.user_attrs.get("spec")
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise UserError(f"study {study_name!r} already exists in {redact(storage_url)} "
                            "without an hpo spec; choose another --study-name")
        study.set_user_attr("spec", dict(spec.raw))
    elif _canonical(stored) != _canonical(spec.raw):
        raise UserError(f"study {study_name!r} already exists in {redact(storage_url)} with a "
                        f"different spec than {spec.source}; choose another --study-name")
    return study


def _canonical(raw: object) -> str:
    return json.dumps(raw, sort_keys=True)


@dataclass
class Progress:
    """Counts of a study's trials by state, and the best value so far."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best: float | None = None
    best_trial: int | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> Progress:
        trials = study.get_trials(deepcopy=False)
        p = cls(
            complete=sum(t.state == TrialState.COMPLETE for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
        )
        if p.complete:
            best = study.best_trial
            p.best, p.best_trial = best.value, best.number
        return p

    def line(self, budget: int) -> str:
        best = "-" if self.best is None else f"{self.best:.4f} (trial {self.best_trial})"
        return (f"[hpo] {self.complete + self.pruned}/{budget} finished: {self.complete} "
                f"complete, {self.pruned} pruned, {self.failed} failed, {self.running} running; "
                f"best {best}")


def _worker_main(url: str, name: str, n_trials: int, timeout: float | None, index: int,
                 threads: int) -> None:
    try:
        run_worker(url, name, n_trials=n_trials, timeout=timeout, worker_index=index,
                   threads=threads)
    except UserError as e:
        print(f"hpo worker {index}: error: {e}", file=sys.stderr)
        sys.exit(2)


def launch(
    spec: StudySpec,
    storage_url: str,
    study_name: str,
    *,
    workers: int = 1,
    n_trials: int | None = None,
    timeout: float | None = None,
    out: TextIO | None = None,
) -> tuple[optuna.Study, int]:
    """Runs the study to its budget with ``workers`` local processes.

    Returns the study and an exit status: 0 when every worker ended normally, 130 after Ctrl-C,
    1 when a worker died.
    """
    out = out or sys.stderr
    if workers < 1:
        raise UserError(f"--workers: must be >= 1, got {workers}")
    storage = open_storage(storage_url)
    study = create_or_resume(spec, storage, storage_url, study_name)
    budget = n_trials or spec.n_trials
    print(f"[hpo] study {study_name!r} in {redact(storage_url)}: {budget} trials, "
          f"{workers} worker(s), metric {spec.metric} ({spec.direction})", file=out, flush=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, name=f"hpo-worker-{i}",
                    args=(storage_url, study_name, budget, timeout, i, default_threads(workers)))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    status = 0
    try:
        last = ""
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            line = Progress.of(study).line(budget)
            if line != last:
                print(line, file=out, flush=True)
                last = line
    except KeyboardInterrupt:
        status = 130
        print("[hpo] interrupted: stopping workers (their trials are closed, not lost)",
              file=out, flush=True)
        _stop(procs)
    if status == 0 and any(p.exitcode not in (0, None) for p in procs):
        status = 1
        codes = ", ".join(f"{p.name}: {p.exitcode}" for p in procs)
        print(f"[hpo] a worker ended abnormally ({codes})", file=out, flush=True)
    _fail_orphans(storage, study_name, {p.pid for p in procs if p.pid is not None})
    print(Progress.of(study).line(budget), file=out, flush=True)
    return study, status


def _stop(procs: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to each worker still alive, a wait, then SIGKILL for any that hangs.

    A worker ends its trial at the next step boundary on the first SIGINT or SIGTERM (a
    terminal's Ctrl-C already reached it; one more signal does no harm).
    """
    for p in procs:
        if p.is_alive() and p.pid:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _fail_orphans(storage: optuna.storages.BaseStorage, study_name: str, pids: set[int]) -> None:
    """Marks FAIL every trial that one of our stopped workers left RUNNING."""
    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study_name)
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and t.user_attrs.get("worker_pid") in pids:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "stop_reason", "interrupted: worker stopped")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)

