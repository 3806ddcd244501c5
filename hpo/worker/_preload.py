"""What the workers' fork server imports once, before it forks any worker.

Imported there only (see :func:`hpo.worker._pool.run_pool`), never by a command. Its first act
installs the stop flag, so that a SIGTERM sent to the whole process group (what Slurm and
Kubernetes do on preemption) does not end the server, which reports each worker's exit status
to the pool; every worker forked afterwards inherits that flag. Then the worker's code:
optuna, hpo and torch, and ``torch._dynamo``, which torch's optimizers import on first use
(about 2 s). Importing torch does not initialize CUDA, so each worker still chooses its GPU
before CUDA starts.
"""

from hpo.worker._signals import process_flag

process_flag()

import torch._dynamo  # noqa: E402, F401

import hpo.worker._worker  # noqa: E402, F401
