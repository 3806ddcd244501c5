"""The first code a spawned worker process runs: the signal flag, then the heavy imports.

Kept apart from :mod:`hpo.worker._pool` so that unpickling the process target imports nothing
slow: the flag is installed within milliseconds of the start, and a SIGTERM that arrives while
optuna and torch are still being imported ends the worker with exit 0, like any preemption.
"""

from __future__ import annotations

import os
import sys

from hpo.worker._plan import WorkerPlan


def worker_main(plan: WorkerPlan) -> None:
    """Target of a worker process: the signal flag first, then the worker."""
    from hpo.worker._signals import StopFlag

    stop = StopFlag()
    stop.install()
    if plan.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = plan.gpu  # before anything initializes CUDA
    from hpo.errors import UserError
    from hpo.worker._worker import run_worker

    if stop():
        return
    try:
        code = run_worker(plan, stop_flag=stop)
    except UserError as e:
        print(f"hpo worker {plan.index}: error: {e}", file=sys.stderr)
        sys.exit(2)
    if code:
        print(f"hpo worker {plan.index}: out of memory on GPU {plan.gpu}; this worker "
              "stops so that the GPU runs one trial fewer", file=sys.stderr)
        sys.exit(code)
