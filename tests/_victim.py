"""The target of :func:`tests.conftest.fork_worker`: a worker process writing to a log of its own.

A module of its own that imports nothing slow, so that the fork server's child unpickles it at
once (the worker's code is preloaded there).
"""

from __future__ import annotations

import os

from hpo.worker._entry import worker_main
from hpo.worker._plan import WorkerPlan


def run(plan: WorkerPlan, log: str) -> None:
    """The pool's worker entry point, its standard output and error going to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    worker_main(plan)
