"""The first code a worker process runs: the signal flag, then the worker.

A worker is a fork of the pool's fork server, which installed the flag and imported the heavy
modules before forking (:mod:`hpo.worker._preload`), so the flag is in place from the worker's
first instruction and a SIGTERM at any point ends it with exit 0, like any preemption. This
module imports nothing slow itself, so that unpickling the process target stays cheap.
"""

from __future__ import annotations

import os
import sys

from hpo.worker._plan import WorkerPlan


def worker_main(plan: WorkerPlan) -> None:
    """Target of a worker process: the signal flag first, then the worker."""
    from hpo.worker._signals import process_flag
    from hpo.worker._watch import follow_parent_out

    stop = process_flag()
    follow_parent_out()
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
