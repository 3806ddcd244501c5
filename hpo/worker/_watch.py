"""A worker's two watchmen: its trial's pulse, and its parent's life.

:class:`StepWatch` is what the trainer polls before every optimizer step (in place of the bare
stop flag): a step costs it two assignments, no storage and no device sync. A thread of its own
stamps the running trial with its last step (``last_step``, see :mod:`hpo.storage._stall`)
every few seconds while steps come, and stops stamping when they stop, so that any reader of
the study sees the stall. When the worker's own trial stalls, the thread fails it with the stall
reason, queues its retry (it resumes from its last checkpoint), and ends this process: SIGTERM,
then SIGKILL, because a main thread blocked in C code never runs Python's signal handlers. The
pool then starts a replacement on the same slot.

:func:`follow_parent_out`: a worker is a fork of the pool's fork server, which the kernel kills
when the pool dies (``PR_SET_PDEATHSIG``, set in :mod:`hpo.worker._preload`). The worker
watches its parent's pid (``os.getppid()`` changes when the parent dies; no pid can be reused
in between, unlike a stored pid) and, once it has gone, stops as on SIGTERM: it checkpoints its
trial, queues the retry and exits; SIGKILL after the pool's own grace when it cannot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import optuna

from hpo import record
from hpo.storage._lineage import Liveness
from hpo.storage._stall import automatic_timeout, requeue_stalled
from hpo.worker._signals import StopFlag

# Seconds a stuck worker gets between SIGTERM and SIGKILL: its trial is already failed and
# queued, and a blocked main thread will not checkpoint anyway.
STUCK_GRACE_S = 5.0
# Seconds an orphaned worker gets to checkpoint before SIGKILL (the pool's own stop gives 30).
ORPHAN_GRACE_S = 30.0


def _end_self(grace: float) -> None:
    """SIGTERM to this process (its flag stops training at the next step), then SIGKILL."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os.kill(os.getpid(), signal.SIGKILL)


class StepWatch:
    """The trainer's ``should_stop``: the stop flag, and the pulse of the running trial.

    Args:
        stop: the process's signal flag.
        study: the worker's study (its storage receives the stamps).
        liveness: ``stall_timeout`` (None: automatic) and the retry limit.
        index: the worker's number in its pool, for its one line.
    """

    def __init__(self, stop: StopFlag, study: optuna.Study, liveness: Liveness,
                 index: int) -> None:
        self.stop, self.study, self.liveness, self.index = stop, study, liveness, index
        self._lock = threading.Lock()
        self._trial: optuna.Trial | None = None
        self._steps = 0
        self._last = 0.0  # monotonic time of the last step (or of the trial's start)
        self._longest: float | None = None  # longest gap between two steps
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="hpo-step-watch", daemon=True).start()

    def __call__(self) -> bool:
        now = time.monotonic()
        if self._steps:
            gap = now - self._last
            if self._longest is None or gap > self._longest:
                self._longest = gap
        self._steps += 1
        self._last = now
        return self.stop()

    def timeout(self) -> float:
        """The running trial's stall limit (see :mod:`hpo.storage._stall`)."""
        if self.liveness.stall_timeout is not None:
            return self.liveness.stall_timeout
        return automatic_timeout(self._longest)

    @contextlib.contextmanager
    def running(self, trial: optuna.Trial) -> Iterator[None]:
        """Watches ``trial`` while the body trains it."""
        with self._lock:
            self._trial, self._steps, self._longest = trial, 0, None
            self._last = time.monotonic()
        self._wake.set()  # stamp it at once: its readers judge it from its start
        try:
            yield
        finally:
            with self._lock:
                self._trial = None

    def _run(self) -> None:
        stamped: tuple[int, int] | None = None  # (trial number, steps) last written
        while True:
            limit = self.timeout()
            # stamps often enough that a reader never mistakes the stamp's age for a stall
            self._wake.wait(min(30.0, max(0.5, limit / 5)))
            self._wake.clear()
            with self._lock:
                trial, steps, last = self._trial, self._steps, self._last
            if trial is None:
                continue
            idle = time.monotonic() - last
            if stamped != (trial.number, steps):
                stamp = {"steps": steps, "at": round(time.time() - idle, 3),
                         "timeout_s": round(self.timeout(), 3)}
                try:
                    trial.storage.set_trial_user_attr(trial._trial_id,  # noqa: SLF001
                                                      record.LAST_STEP, stamp)
                    stamped = (trial.number, steps)
                except Exception:  # noqa: BLE001
                    pass  # it finished meanwhile, or the storage is down: the next tick retries
            elif idle > self.timeout():
                self._give_up(trial)
                return

    def _give_up(self, trial: optuna.Trial) -> None:
        """Fails the stalled trial, queues its retry and ends this worker, in one line."""
        frozen = trial.storage.get_trial(trial._trial_id)  # noqa: SLF001
        requeued = requeue_stalled(self.study, self.liveness, [frozen])
        retry = requeued.get(trial.number)
        then = f"queued to resume as trial {retry}" if retry is not None else "not retried here"
        print(f"hpo worker {self.index}: trial {trial.number} made no optimizer step for "
              f"{self.timeout():g} s (stall_timeout): failed and {then}; this worker is stuck "
              "and ends (SIGTERM, then SIGKILL)", file=sys.stderr, flush=True)
        _end_self(STUCK_GRACE_S)


def follow_parent_out() -> None:
    """Ends this worker soon after its parent (the fork server) dies: see the module's
    docstring. A daemon thread; costs a ``getppid`` a second."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        print(f"hpo worker (pid {os.getpid()}): its pool is gone; it checkpoints its trial, "
              "queues it to resume and exits", file=sys.stderr, flush=True)
        _end_self(ORPHAN_GRACE_S)

    threading.Thread(target=watch, name="hpo-parent-watch", daemon=True).start()
