"""What the workers' fork server imports once, before it forks any worker.

Imported there only (see :func:`hpo.worker._pool.run_pool`), never by a command. Its first act
installs the stop flag, so that a SIGTERM sent to the whole process group (what Slurm and
Kubernetes do on preemption) does not end the server, which reports each worker's exit status
to the pool; every worker forked afterwards inherits that flag. The server dies with the pool
(``PR_SET_PDEATHSIG``: left alone, it and its workers outlived a ``kill -9`` of the pool), and
its workers follow it out (:func:`hpo.worker._watch.follow_parent_out`). Then the worker's code:
optuna, hpo and torch, and ``torch._dynamo``, which torch's optimizers import on first use
(about 2 s). Importing torch does not initialize CUDA, so each worker still chooses its GPU
before CUDA starts.

Last, what every worker imports when its first trial ends, to leave its note and figures
(:mod:`hpo.study._notes`): optuna-dashboard, which brings scikit-learn and SciPy through
``optuna.importance`` (about 1.7 s of CPU), and matplotlib's figure and Agg canvas (no pyplot:
a worker draws on figures of its own); once here instead of once per worker. SciPy's OpenBLAS
starts its thread pool here, as NumPy's already has: OpenBLAS re-creates its threads in a
forked child, as it must for any fork.
"""

from hpo.worker._signals import die_with_parent, process_flag

process_flag()
die_with_parent()

import matplotlib.backends.backend_agg  # noqa: E402, F401  (what savefig draws a PNG with)
import matplotlib.figure  # noqa: E402, F401
import optuna_dashboard  # noqa: E402, F401
import torch._dynamo  # noqa: E402, F401

import hpo.worker._worker  # noqa: E402, F401
