"""Local worker processes: one per GPU slot (or N on the CPU), watched until the budget is met.

``hpo launch`` and ``hpo worker`` both run this. Each process gets its own
``CUDA_VISIBLE_DEVICES`` before CUDA starts, opens its own storage connection after the fork,
and runs :func:`run_worker`. Workers are forks of a fork server that imported their code once
(:mod:`hpo.worker._preload`), never of this process, which holds storage connections. The
parent watches and keeps the pool whole: it prints progress, forwards SIGINT or SIGTERM to the
workers (each checkpoints its trial and queues the retry), requeues the trial of a worker that
died the moment it dies and starts a replacement on its slot (with a back-off and a limit for
a slot whose workers die at start), and stops a worker whose trial stalled; nothing is left
RUNNING and nothing trained is lost. When the parent itself dies, its fork server and workers
follow it out (see :mod:`hpo.worker._watch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import is_database, open_storage
from hpo.storage._lineage import Liveness, requeue
from hpo.storage._stall import requeue_stalled, stall_reason
from hpo.worker._entry import worker_main
from hpo.worker._plan import WorkerPlan
from hpo.worker._signals import EXIT_OUT_OF_MEMORY, StopFlag
from hpo.worker._watch import STUCK_GRACE_S
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
    track: str | None = None,
) -> int:
    """Runs one worker process per slot until they end; returns the exit status.

    0: the workers finished (or were stopped by SIGTERM: a clean preemption), workers that
    died on the way included (each was replaced, its trial requeued); 130: SIGINT; 1: a slot
    was given up (its workers kept dying at start), or every trial failed; 2: a worker refused
    its input.

    ``stop`` is the flag the command installed first thing (a signal during start-up then
    counts as a request to stop, not a crash); one is installed here when None. ``seeded``:
    the first worker's sampler uses the spec's seed (``hpo launch`` on a fresh study).
    ``shown_budget``: the budget the progress lines show when it is not ``n_trials`` (``hpo
    replicate`` runs the queue with a budget of 1 but reports against the study's).
    ``track``: trackers the workers turn on beside the spec's (``"mlflow,tensorboard"``).
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
    plans = [WorkerPlan(where, study_name, folder, n_trials, timeout, seeded and s.index == 0,
                        threads, s.index, s.gpu, liveness.stall_timeout, track) for s in slots]
    fleet = _Fleet(ctx, study, liveness, stop, out)
    # A signal only sets a flag, so that it never lands inside a storage read or write here.
    try:
        for plan in plans:
            fleet.start(plan)
    except (OSError, EOFError):
        if not stop():
            raise
        # a signal to the process group ended the fork server while it was starting
        _stop([m.proc for m in fleet.members if m.proc.pid])
        print("[hpo] stopped before every worker started", file=out, flush=True)
        return stop.exit_status
    try:
        last = fleet.watch(shown_budget or n_trials)
    finally:
        if restore is not None:
            restore()
    status = fleet.verdict()
    progress = Progress.of(study)
    final = progress.line(shown_budget or n_trials)
    if final != last:
        print(final, file=out, flush=True)
    if status == 0 and not stop() and every_trial_failed(study):
        print(f"[hpo] every trial failed ({progress.failed}); their stop_reason says why "
              "(hpo report, the dashboard, or optuna trials)", file=out, flush=True)
        status = 1
    return status


# A worker that dies sooner than this after its start died "at start"; after RESTART_LIMIT such
# deaths in a row its slot is given up (a broken GPU or driver must not loop). Its replacements
# wait 1, 2, 4, ... s; a worker that dies later is replaced at once.
QUICK_DEATH_S = 60.0
RESTART_LIMIT = 3


@dataclass
class _Member:
    """One slot's current worker process."""

    plan: WorkerPlan
    proc: multiprocessing.process.BaseProcess
    started: float
    quick_deaths: int = 0  # deaths at start in a row on this slot
    restart_at: float | None = None  # when its replacement is due
    kill_at: float | None = None  # when a stuck worker gets SIGKILL
    stalled: dict[int, int | None] = field(default_factory=dict)  # its stalled trials' retries
    done: bool = False  # ended for good (finished, refused its input, gave up)


class _Fleet:
    """The pool's workers, kept whole: a worker that dies while the study has work is
    replaced on its slot (its trial queued to resume at once), and one whose trial stalled
    is stopped and replaced (see :mod:`hpo.storage._stall`)."""

    def __init__(self, ctx: multiprocessing.context.ForkServerContext, study: optuna.Study,
                 liveness: Liveness, stop: StopFlag, out: TextIO) -> None:
        self.ctx, self.study, self.liveness, self.stop, self.out = ctx, study, liveness, stop, out
        self.members: list[_Member] = []
        self.began = time.monotonic()
        self.given_up = False
        self.refused = False

    def start(self, plan: WorkerPlan, member: _Member | None = None) -> None:
        """Starts ``plan``'s worker: a new slot, or ``member``'s replacement."""
        proc = self.ctx.Process(target=worker_main, name=f"hpo-worker-{plan.index}",
                                args=(plan,))
        if member is None:
            self.members.append(member := _Member(plan, proc, time.monotonic()))
        member.proc, member.started, member.restart_at = proc, time.monotonic(), None
        proc.start()

    def _say(self, line: str) -> None:
        print(f"[hpo] {line}", file=self.out, flush=True)

    def watch(self, budget: int) -> str:
        """Prints a progress line whenever it changes, replaces dead workers and stops stuck
        ones, until every slot has ended or a signal asks the workers to stop (then stops
        them); the last line printed."""
        last = ""
        while not self.stop():
            self._tend()  # first: a worker that ended is seen before the loop may stop
            alive = [m for m in self.members if m.proc.is_alive()]
            due = [t for m in self.members for t in (m.restart_at, m.kill_at) if t is not None]
            if not alive and not due:
                break
            wait = min([1.0, *(t - time.monotonic() for t in due)])
            # a second between progress lines, less when a worker exits (its sentinel wakes us)
            multiprocessing.connection.wait([m.proc.sentinel for m in alive], max(0.0, wait))
            line = Progress.of(self.study).line(budget)
            if line != last:
                print(line, file=self.out, flush=True)
                last = line
        if self.stop():
            self._say("stopping workers: running trials checkpoint and are queued to resume")
            _stop([m.proc for m in self.members])
        return last

    def _tend(self) -> None:
        now = time.monotonic()
        for m in self.members:
            if m.kill_at is not None and now >= m.kill_at:
                m.kill_at = None
                if m.proc.is_alive():
                    m.proc.kill()
            if m.restart_at is not None:
                if now >= m.restart_at and not self.stop():
                    self._restart(m)
            elif not m.done and not m.proc.is_alive():
                self._ended(m)
        self._stop_stuck()

    def _ended(self, m: _Member) -> None:
        code = m.proc.exitcode
        if code in (0, 2, EXIT_OUT_OF_MEMORY) or self.stop():
            m.done = True
            self.refused |= code == 2
            return
        requeued = {**m.stalled, **_requeue_orphans(
            self.study, {m.proc.pid} if m.proc.pid else set(), self.liveness)}
        m.stalled = {}
        quick = time.monotonic() - m.started < QUICK_DEATH_S
        m.quick_deaths = m.quick_deaths + 1 if quick else 0
        left = self._time_left()
        head = f"a worker died ({m.proc.name}: {code}); {_requeued_words(requeued)}"
        if left is not None and left <= 0:
            m.done = True
            self._say(f"{head}; the pool's timeout has passed, so no worker replaces it")
        elif m.quick_deaths > RESTART_LIMIT:
            m.done = self.given_up = True
            self._say(f"{head}; it died within {QUICK_DEATH_S:g} s of its start "
                      f"{m.quick_deaths} times in a row, so it is not restarted again (the "
                      "pool runs one worker short)")
        else:
            delay = 2.0 ** (m.quick_deaths - 1) if m.quick_deaths else 0.0
            m.restart_at = time.monotonic() + delay
            self._say(f"{head}; a new worker starts on its slot"
                      + (f" in {delay:g} s" if delay else ""))

    def _restart(self, m: _Member) -> None:
        left = self._time_left()
        self.start(dataclasses.replace(m.plan, seeded=False,
                                       timeout=None if left is None else max(left, 0.001)), m)

    def _time_left(self) -> float | None:
        timeout = self.members[0].plan.timeout if self.members else None
        return None if timeout is None else timeout - (time.monotonic() - self.began)

    def _stop_stuck(self) -> None:
        """SIGTERM (then SIGKILL) to a worker of ours whose trial stalled, its trial failed
        and queued first. The worker's own watch normally does this itself; this catches a
        worker whose every thread is stuck (a C call that holds the GIL)."""
        ours = {m.proc.pid: m for m in self.members if m.proc.is_alive() and m.kill_at is None}
        host = socket.gethostname()
        stuck = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.user_attrs.get(record.HOST) == host
                 and t.user_attrs.get(record.WORKER_PID) in ours and stall_reason(t)]
        if not stuck:
            return
        requeued = requeue_stalled(self.study, self.liveness, stuck)
        for t in stuck:
            m = ours[t.user_attrs[record.WORKER_PID]]
            m.stalled[t.number] = requeued.get(t.number)
            self._say(f"trial {t.number} of {m.proc.name} stalled; the worker is stopped "
                      "(SIGTERM, then SIGKILL) and replaced")
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.proc.pid, signal.SIGTERM)  # type: ignore[arg-type]
            m.kill_at = time.monotonic() + STUCK_GRACE_S

    def verdict(self) -> int:
        """The pool's exit status (see :func:`run_pool`); requeues the trials of workers that
        the stop had to kill."""
        if self.stop():
            unclean = [m.proc for m in self.members
                       if m.proc.exitcode not in (0, 2, EXIT_OUT_OF_MEMORY, None)]
            if unclean:
                _requeue_orphans(self.study, {p.pid for p in unclean if p.pid}, self.liveness)
            return self.stop.exit_status
        if self.given_up:
            return 1
        return 2 if self.refused else 0


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
