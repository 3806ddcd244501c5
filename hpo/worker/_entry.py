"""The first code a spawned worker process runs: the signal flag, then the heavy imports.

Kept apart from :mod:`hpo.worker._pool` so that unpickling the process target imports nothing
slow: the flag is installed within milliseconds of the start, and a SIGTERM that arrives while
optuna and torch are still being imported ends the worker with exit 0, like any preemption.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def worker_main(url: str, name: str, checkpoint_dir: str | None, n_trials: int | None,
                timeout: float | None, slot: Any, threads: int, seeded: bool) -> None:
    """Target of a worker process (``slot`` is a :class:`hpo.worker._pool.Slot`; ``seeded``: see
    :func:`hpo.worker._worker.run_worker`)."""
    from hpo.worker._signals import StopFlag

    stop = StopFlag()
    stop.install()
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu  # before anything initializes CUDA
    from hpo.errors import UserError
    from hpo.worker._worker import run_worker

    if stop():
        return
    try:
        code = run_worker(url, name, checkpoint_dir, n_trials=n_trials, timeout=timeout,
                          seeded=seeded, threads=threads, stop_flag=stop)
    except UserError as e:
        print(f"hpo worker {slot.index}: error: {e}", file=sys.stderr)
        sys.exit(2)
    if code:
        print(f"hpo worker {slot.index}: out of memory on GPU {slot.gpu}; this worker "
              "stops so that the GPU runs one trial fewer", file=sys.stderr)
        sys.exit(code)
