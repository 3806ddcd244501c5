"""SIGINT and SIGTERM as a flag, installed before anything slow runs.

Standard library only, so that a process can install it as its first act: a signal that
arrives while optuna, torch or the storage are still being imported or opened then stops the
process cleanly (exit 0 for SIGTERM, a preemption) instead of killing it with status 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

# Exit status of a worker that stopped because its GPU ran out of memory (EX_TEMPFAIL): the
# pool does not replace it, so the GPU runs one trial fewer.
EXIT_OUT_OF_MEMORY = 75


class StopFlag:
    """Set by the first SIGINT or SIGTERM; the trainer polls it between steps.

    Turning signals into a flag (instead of KeyboardInterrupt at an arbitrary line) means a
    worker never stops halfway through a storage write: the running trial checkpoints at a step
    boundary, is queued for a retry, and the worker exits normally.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None  # the first signal received

    def install(self) -> Callable[[], None]:
        """Catches SIGINT and SIGTERM from now on; returns what puts the old handlers back."""
        previous = {sig: signal.signal(sig, self._set) for sig in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]

    def _set(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    @property
    def exit_status(self) -> int:
        """0 after SIGTERM (a clean preemption), 130 after SIGINT (Ctrl-C)."""
        return 0 if self.signum == signal.SIGTERM else 130


_process_flag: StopFlag | None = None


def process_flag() -> StopFlag:
    """This process's flag, installed on the first call.

    A worker forked from the fork server inherits the server's flag, installed there before any
    fork: a signal that lands between the fork and the worker's first line is kept, not lost.
    """
    global _process_flag
    if _process_flag is None:
        _process_flag = StopFlag()
        _process_flag.install()
    return _process_flag


def die_with_parent() -> None:
    """Asks the kernel to SIGKILL this process when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere nothing). The fork server calls it: it holds no work of its
    own, and its death is what tells its workers that the pool has gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
