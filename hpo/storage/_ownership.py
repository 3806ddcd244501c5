"""Which RUNNING trials still have a live process behind them, on storages without heartbeats.

The journal file (the embedded default) has no heartbeat, so a worker killed with SIGKILL, by
the OOM killer or with its machine leaves its trial RUNNING forever. Each worker therefore holds
an exclusive ``flock`` on ``<checkpoint dir>/<study>/locks/trial-N.lock`` while it runs trial N
(taken before the trial records its ``worker_pid``, released after the result is stored). The
kernel drops the lock when the process dies, however it dies; so a RUNNING trial whose lock
anyone can take has no owner, and the next worker or launch fails it and queues its retry, which
resumes from the trial's checkpoint. The lock lives beside the checkpoints, on the file system
that every worker of the study shares.
"""

from __future__ import annotations

import datetime
import fcntl
import logging
import os
import socket
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._lineage import Liveness, requeue

_log = logging.getLogger("hpo.worker")


class TrialLocks:
    """The lock files of one study's running trials."""

    def __init__(self, study_dir: Path) -> None:
        self.dir = study_dir / "locks"
        self._held: dict[int, int] = {}

    def _path(self, number: int) -> Path:
        return self.dir / f"trial-{number}.lock"

    def hold(self, trial: optuna.Trial) -> None:
        """Takes the trial's lock for this process (until :meth:`release` or death) and records
        that it did (``owner_lock``); a directory that refuses the file is a warning: the trial
        then runs unlocked, and is judged by its pid like a trial of an older hpo."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(trial.number), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            _log.warning("trial %d runs without its ownership lock: %s (%s)", trial.number,
                         self.dir, e.strerror or e)
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._held[trial.number] = fd
        trial.set_user_attr(record.OWNER_LOCK, True)

    def release(self, number: int) -> None:
        fd = self._held.pop(number, None)
        if fd is None:
            return
        try:
            self._path(number).unlink(missing_ok=True)
        except OSError:
            pass  # a read-only directory keeps the file; the lock goes with the descriptor
        os.close(fd)

    def release_all(self) -> None:
        for number in list(self._held):
            self.release(number)

    def owned(self, number: int) -> bool:
        """Whether a live process holds trial ``number``'s lock (this one included)."""
        if number in self._held:
            return True
        try:
            fd = os.open(self._path(number), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the lock if we took it
        return False


def _gone(t: FrozenTrial, locks: TrialLocks, grace: datetime.timedelta) -> bool:
    """Whether RUNNING trial ``t`` has no live worker.

    With ``owner_lock`` recorded, its lock decides. Without it: a trial that has recorded no
    ``worker_pid`` may be one a live worker has just created and not yet locked, so it counts
    as gone only once it is ``grace_period`` old; a trial that ran unlocked is gone when its
    pid no longer exists on this host (on another host nothing here can tell).
    """
    if t.user_attrs.get(record.OWNER_LOCK):
        return not locks.owned(t.number)
    if record.WORKER_PID not in t.user_attrs:
        return t.datetime_start is not None and datetime.datetime.now() - t.datetime_start > grace
    if t.user_attrs.get(record.HOST) != socket.gethostname():
        return False
    try:
        os.kill(int(t.user_attrs[record.WORKER_PID]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def requeue_unowned(study: optuna.Study, locks: TrialLocks, liveness: Liveness) -> list[int]:
    """Fails and retries the RUNNING trials that no live process holds; returns their numbers."""
    grace = datetime.timedelta(seconds=liveness.grace_period)
    requeued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _gone(t, locks, grace):
            continue
        if study._storage.get_trial(t._trial_id).state != TrialState.RUNNING:  # noqa: SLF001
            continue  # it finished while we looked
        pid, host = t.user_attrs.get(record.WORKER_PID), t.user_attrs.get(record.HOST)
        who = f"its worker (pid {pid} on {host})" if pid is not None else "its worker"
        how = "no process holds the trial's lock" if t.user_attrs.get(record.OWNER_LOCK) else \
            "its process is gone"
        number = requeue(study, t.number, liveness,
                         reason=f"{who} is gone: {how}; queued to resume from its checkpoint")
        _log.warning("trial %d was RUNNING with no live worker; %s", t.number,
                     f"queued to resume as trial {number}" if number is not None
                     else "not retried (its retries are spent)")
        requeued.append(t.number)
    return requeued
