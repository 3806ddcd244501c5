"""Local worker processes: one per GPU slot (or N on the CPU), watched until the budget is met.

``hpo launch`` and ``hpo worker`` both run this. Each process gets its own
``CUDA_VISIBLE_DEVICES`` before CUDA starts, opens its own storage connection after the fork,
and runs :func:`run_worker`. Workers are forks of a fork server that imported their code once
(:mod:`hpo.worker._preload`), never of this process, which holds storage connections. The
parent only watches: it prints progress, forwards SIGINT or SIGTERM to the workers (each
checkpoints its trial and queues the retry), and requeues the trial of any worker that died,
so nothing is left RUNNING and nothing trained is lost.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import is_database, open_storage
from hpo.storage._lineage import Liveness, requeue
from hpo.worker._entry import worker_main
from hpo.worker._plan import WorkerPlan
from hpo.worker._signals import EXIT_OUT_OF_MEMORY, StopFlag
from hpo.worker._worker import default_threads


@dataclass(frozen=True)
class Slot:
    """One worker process: its index and the GPU it sees (None: the CPU)."""

    index: int
    gpu: str | None


def plan_slots(gpus: list[str] | None, trials_per_gpu: int | str, workers: int | None,
               raw_spec: dict | None = None) -> list[Slot]:
    """Where worker processes go.

    With GPUs (``gpus`` given, else every visible one): ``trials_per_gpu`` processes per GPU
    (``auto``: as many as the probe of ``raw_spec`` says fit), or ``workers`` processes spread
    round-robin over them. Without: ``workers`` (default 1) processes on the CPU.
    """
    if gpus is None:
        import torch

        if torch.cuda.is_available():
            gpus = [str(i) for i in range(torch.cuda.device_count())]
    if not gpus:
        return [Slot(i, None) for i in range(workers or 1)]
    if workers:
        return [Slot(i, gpus[i % len(gpus)]) for i in range(workers)]
    per_gpu = {g: trials_per_gpu for g in gpus}
    if trials_per_gpu == "auto":
        from hpo.worker._packing import measure_packing

        per_gpu = {g: measure_packing(dict(raw_spec or {}), g) for g in gpus}
        print("[hpo] auto packing: " + ", ".join(f"GPU {g}: {k} trials"
                                                 for g, k in per_gpu.items()), file=sys.stderr)
    order = [g for g in gpus for _ in range(int(per_gpu[g]))]
    return [Slot(i, g) for i, g in enumerate(order)]


@dataclass
class Progress:
    """Counts of a study's trials by state, and the best value so far."""

    complete: int = 0
    pruned: int = 0
    paused: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    replicates: int = 0
    best: float | None = None
    best_trial: int | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> Progress:
        """Counts of the search's own trials; finished replicates are counted apart."""
        own, replicates = record.split_replicates(study.get_trials(deepcopy=False))
        p = cls(**record.count_states(own), replicates=replicates)
        complete = record.leaders(study, own)
        if complete:
            p.best, p.best_trial = complete[0].value, complete[0].number
        return p

    def line(self, budget: int) -> str:
        best = "-" if self.best is None else f"{self.best:.4f} (trial {self.best_trial})"
        queued = f", {self.waiting} queued" if self.waiting else ""
        reps = f", {self.replicates} replicates done" if self.replicates else ""
        done = self.complete + self.pruned + self.paused
        # Each worker may finish one trial past the budget: say so rather than print 61/60.
        count = f"{done}/{budget}" if done <= budget else f"{done} (budget {budget})"
        paused = f"{self.paused} paused, " if self.paused else ""
        return (f"[hpo] {count} finished: {self.complete} complete, {self.pruned} pruned, "
                f"{paused}{self.failed} failed, {self.running} running{queued}{reps}; "
                f"best {best}")


def worker_context(storage_url: str) -> multiprocessing.context.ForkServerContext:
    """How every worker process starts: a fork of one server per process that imported the
    workers' code once (:mod:`hpo.worker._preload`), and a database storage's modules for a
    pool on one (:mod:`hpo.worker._preload_rdb`): ready in milliseconds instead of importing
    torch and optuna again (about 5 s of CPU a worker)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hpo.worker._preload", *(
        ["hpo.worker._preload_rdb"] if is_database(storage_url) else [])])
    return ctx


def run_pool(
    storage_url: str,
    study_name: str,
    slots: list[Slot],
    *,
    checkpoint_dir: Path | None,
    liveness: Liveness,
    n_trials: int,
    timeout: float | None = None,
    out: TextIO | None = None,
    stop: StopFlag | None = None,
    seeded: bool = False,
    shown_budget: int | None = None,
) -> int:
    """Runs one worker process per slot until they end; returns the exit status.

    0: the workers finished (or were stopped by SIGTERM: a clean preemption); 130: SIGINT;
    1: a worker died (its trial is requeued), or every trial failed; 2: a worker refused its
    input.

    ``stop`` is the flag the command installed first thing (a signal during start-up then
    counts as a request to stop, not a crash); one is installed here when None. ``seeded``:
    the first worker's sampler uses the spec's seed (``hpo launch`` on a fresh study).
    ``shown_budget``: the budget the progress lines show when it is not ``n_trials`` (``hpo
    replicate`` runs the queue with a budget of 1 but reports against the study's).
    """
    out = out or sys.stderr
    restore = None
    if stop is None:
        stop = StopFlag()
        restore = stop.install()
    if stop():
        print("[hpo] stopped before any worker started", file=out, flush=True)
        return stop.exit_status
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    ctx = worker_context(storage_url)
    threads = default_threads(len(slots))
    # Paths in the plan are absolute: a worker runs in its fork server's working directory,
    # which is this process's only if this process started the server.
    where = storage_url if "://" in storage_url else os.path.abspath(storage_url)
    folder = str(checkpoint_dir.absolute()) if checkpoint_dir else None
    procs = [
        ctx.Process(target=worker_main, name=f"hpo-worker-{s.index}", args=(WorkerPlan(
            where, study_name, folder, n_trials, timeout, seeded and s.index == 0, threads,
            s.index, s.gpu),))
        for s in slots
    ]
    # A signal only sets a flag, so that it never lands inside a storage read or write here.
    try:
        for p in procs:
            p.start()
    except (OSError, EOFError):
        if not stop():
            raise
        # a signal to the process group ended the fork server while it was starting
        _stop([p for p in procs if p.pid])
        print("[hpo] stopped before every worker started", file=out, flush=True)
        return stop.exit_status
    try:
        last = _watch(procs, study, stop, out, shown_budget or n_trials)
    finally:
        if restore is not None:
            restore()
    status = _verdict(procs, study, stop, liveness, out)
    progress = Progress.of(study)
    final = progress.line(shown_budget or n_trials)
    if final != last:
        print(final, file=out, flush=True)
    if status == 0 and not stop() and every_trial_failed(study):
        print(f"[hpo] every trial failed ({progress.failed}); their stop_reason says why "
              "(hpo report, the dashboard, or optuna trials)", file=out, flush=True)
        status = 1
    return status


def _watch(procs: list[multiprocessing.process.BaseProcess], study: optuna.Study,
           stop: StopFlag, out: TextIO, budget: int) -> str:
    """Prints a progress line whenever it changes, until the workers end or a signal asks
    them to stop (then stops them); the last line printed."""
    last = ""
    while any(p.is_alive() for p in procs) and not stop():
        # a second between progress lines, less when a worker exits (its sentinel wakes us)
        multiprocessing.connection.wait([p.sentinel for p in procs if p.is_alive()], 1.0)
        line = Progress.of(study).line(budget)
        if line != last:
            print(line, file=out, flush=True)
            last = line
    if stop():
        print("[hpo] stopping workers: running trials checkpoint and are queued to resume",
              file=out, flush=True)
        _stop(procs)
    return last


def _verdict(procs: list[multiprocessing.process.BaseProcess], study: optuna.Study,
             stop: StopFlag, liveness: Liveness, out: TextIO) -> int:
    """The pool's exit status from its workers' (see :func:`run_pool`); requeues the trials
    of workers that died and says so in one line."""
    status = stop.exit_status if stop() else 0
    unclean = [p for p in procs if p.exitcode not in (0, 2, EXIT_OUT_OF_MEMORY, None)]
    requeued: dict[int, int | None] = {}
    if unclean:
        requeued = _requeue_orphans(study, {p.pid for p in unclean if p.pid}, liveness)
    # A worker that was told to stop may be ended by the forwarded SIGTERM itself, when it
    # arrives while the worker's interpreter is already exiting (handlers are reset then).
    dead = [p for p in unclean if not (stop() and p.exitcode == -signal.SIGTERM)]
    if dead:
        if status == 0:
            codes = ", ".join(f"{p.name}: {p.exitcode}" for p in dead)
            print(f"[hpo] a worker died ({codes}); {_requeued_words(requeued)}",
                  file=out, flush=True)
            return 1
    elif status == 0 and any(p.exitcode == 2 for p in procs):
        return 2
    return status


def every_trial_failed(study: optuna.Study) -> bool:
    """Whether the study's own trials all failed for good: none finished, none is queued or
    running, and at least one failed without a retry (an interrupted trial's retry waits)."""
    own, _ = record.split_replicates(study.get_trials(deepcopy=False))
    retried = record.retried_numbers(own)
    if any(t.state != TrialState.FAIL for t in own):
        return False
    return any(t.number not in retried and record.DUPLICATE_OF not in t.user_attrs
               for t in own)


def _stop(procs: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to each worker still alive, again every second, up to 30 s to checkpoint, then
    SIGKILL.

    Again, because CPython drops the signals that reach a forked child before it has finished
    forking (``PyOS_AfterFork_Child`` clears them): a worker forked just as the pool was told
    to stop would otherwise train on, unaware, until killed. The flag makes a repeat harmless.
    """
    deadline = time.monotonic() + 30
    while (alive := [p for p in procs if p.is_alive() and p.pid]) and \
            (left := deadline - time.monotonic()) > 0:
        for p in alive:
            try:
                os.kill(p.pid, signal.SIGTERM)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        multiprocessing.connection.wait([p.sentinel for p in alive], min(1.0, left))
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()


def _requeue_orphans(study: optuna.Study, pids: set[int], liveness: Liveness
                     ) -> dict[int, int | None]:
    """Fails and retries every trial that one of our dead workers left RUNNING.

    Returns {trial number: its retry's number, or None when no retry was left}.
    """
    host = socket.gethostname()
    requeued = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(record.HOST) == host and t.user_attrs.get(record.WORKER_PID) in pids:
            requeued[t.number] = requeue(
                study, t.number, liveness, reason="its worker process died; queued to resume")
    return requeued


def _requeued_words(requeued: dict[int, int | None]) -> str:
    """What happened to the dead workers' trials, for the one line the pool prints."""
    if not requeued:
        return "it was running no trial, so nothing was lost"
    return "; ".join(f"trial {n} is queued to resume as trial {r}" if r is not None else
                     f"trial {n} is not retried again (another process retried it first, or "
                     "its retries are spent)"
                     for n, r in sorted(requeued.items()))
