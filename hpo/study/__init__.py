"""The study layer: spec -> search space -> trial -> trainer, and what a study adds to Optuna.

It turns Optuna trials into :class:`hpo.config.TrainConfig` objects and records what each run
produced; the training core below it never sees a trial, the storage layer below it keeps the
studies, the worker layer above it runs them. The package imports nothing itself, so a command
that only reads a storage never loads torch; callers import from the module that does the job.

Modules, in the order a trial goes through them: ``_spec`` (TOML and its checks), ``_space``
(trial -> config), ``_objective`` (one trial: train, report, checkpoint), ``_checkpoints``
(study-keyed checkpoint folders), ``_notes`` (the dashboard's trial notes and figures);
``_samplers`` (tables), ``_promotion`` (the asha pruner), ``_compare`` (head-to-head studies),
``_warm`` (warm start), ``_replicate``.
"""
