"""The study layer: spec -> search space -> objective -> workers -> storage.

It turns Optuna trials into :class:`hpo.training.TrainConfig` objects and records what each run
produced; the training core below it never sees a trial. Callers import from the module that
does the job (``hpo.study._storage.open_storage``, ``hpo.study._launch.launch``, ...): the
package imports nothing itself, so a command that only reads a storage never loads torch.

Modules, in the order a trial goes through them: ``_spec`` (TOML and its checks), ``_space``
(trial -> config), ``_objective`` (one trial), ``_worker`` (one process), ``_entry`` and
``_signals`` (a worker process's first code), ``_pool`` (local processes), ``_launch`` (create
and run), ``_storage`` (storages, retries of calls and of trials), ``_checkpoints``,
``_ownership`` (journal liveness), ``_samplers`` (tables), ``_notes``, ``_packing``,
``_replicate``.
"""
