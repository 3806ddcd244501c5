"""The study layer: spec -> search space -> objective -> workers -> storage.

It turns Optuna trials into :class:`hpo.training.TrainConfig` objects and records what each run
produced; the training core below it never sees a trial.
"""

from hpo.study._checkpoints import CheckpointStore, resolve_checkpoint_dir
from hpo.study._launch import create_or_resume, launch
from hpo.study._pool import Progress, Slot, plan_slots, run_pool
from hpo.study._samplers import PRUNERS, SAMPLERS, build_pruner, build_sampler
from hpo.study._space import AXES, PARAMS, SearchSpace, suggest_config
from hpo.study._spec import METRICS, StudySpec, load_spec, parse_spec
from hpo.study._storage import (
    DEFAULT_STORAGE,
    ENV_VAR,
    Liveness,
    open_storage,
    redact,
    resolve_url,
    run_proxy,
)
from hpo.study._worker import Budget, load_spec_from_study, run_worker

__all__ = [
    "AXES",
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "METRICS",
    "PARAMS",
    "PRUNERS",
    "SAMPLERS",
    "Budget",
    "CheckpointStore",
    "Liveness",
    "Progress",
    "SearchSpace",
    "Slot",
    "StudySpec",
    "build_pruner",
    "build_sampler",
    "create_or_resume",
    "launch",
    "load_spec",
    "load_spec_from_study",
    "open_storage",
    "parse_spec",
    "plan_slots",
    "redact",
    "resolve_checkpoint_dir",
    "resolve_url",
    "run_pool",
    "run_proxy",
    "run_worker",
    "suggest_config",
]
