"""Where studies live, and the life of a trial's chain in them.

``_backends`` opens storages: the embedded journal file (the default), PostgreSQL (or any
Optuna URL), a gRPC proxy; it redacts passwords and finds studies. ``_rdb`` is the database
storage that outlives restarts, dropped connections and frozen workers. ``_lineage`` holds the
liveness settings and a trial's chain (retries of failed or interrupted trials, continuations
of paused ones); ``_ownership`` the lock files that give the journal file the liveness
PostgreSQL gets from heartbeats; ``_repair`` recovers a damaged journal. Nothing here knows a
spec, a sampler or torch; the study and worker layers build on it. Callers import from the
module that does the job (``hpo.storage._backends.open_storage``).
"""
