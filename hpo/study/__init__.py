"""The study layer: spec -> search space -> objective -> workers -> storage.

It turns Optuna trials into :class:`hpo.training.TrainConfig` objects and records what each run
produced; the training core below it never sees a trial. Names are imported on first use, so
that a process needing only the storage (a benchmark, a proxy) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "enqueue_replicates": "hpo.study._replicate",
    "AXES": "hpo.study._space",
    "Budget": "hpo.study._worker",
    "CheckpointStore": "hpo.study._checkpoints",
    "check_writable": "hpo.study._checkpoints",
    "DEFAULT_STORAGE": "hpo.study._storage",
    "ENV_VAR": "hpo.study._storage",
    "Liveness": "hpo.study._storage",
    "METRICS": "hpo.study._spec",
    "PARAMS": "hpo.study._space",
    "PRUNERS": "hpo.study._samplers",
    "Progress": "hpo.study._pool",
    "SAMPLERS": "hpo.study._samplers",
    "SearchSpace": "hpo.study._space",
    "Slot": "hpo.study._pool",
    "StudySpec": "hpo.study._spec",
    "build_pruner": "hpo.study._samplers",
    "build_sampler": "hpo.study._samplers",
    "create_or_resume": "hpo.study._launch",
    "launch": "hpo.study._launch",
    "load_spec": "hpo.study._spec",
    "load_spec_from_study": "hpo.study._spec",
    "open_storage": "hpo.study._storage",
    "parse_spec": "hpo.study._spec",
    "plan_slots": "hpo.study._pool",
    "redact": "hpo.study._storage",
    "resolve_checkpoint_dir": "hpo.study._checkpoints",
    "resolve_url": "hpo.study._storage",
    "run_pool": "hpo.study._pool",
    "run_proxy": "hpo.study._storage",
    "run_worker": "hpo.study._worker",
    "suggest_config": "hpo.study._space",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'hpo.study' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
