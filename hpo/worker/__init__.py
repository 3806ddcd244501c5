"""Processes that run studies: ``_launch`` (``hpo create`` / ``hpo launch``), ``_pool`` (local
worker processes, their placement on GPUs or CPU cores, progress and exit status), ``_preload``,
``_entry`` and ``_signals`` (the fork server's and a worker's first code: the signal flag before
any slow import), ``_worker`` (one process's trial loop over a study), ``_packing``
(``--trials-per-gpu auto``).

Above the study layer (which turns a trial into a config and a result) and the storage layer.
The package imports nothing itself: the fork server imports ``_preload`` first and must install
its signal flag before torch loads. Callers import from the module that does the job.
"""
