"""The training core: models, initialization, optimizers, schedules, data and the trainer.

It trains a resolved :class:`TrainConfig` and calls back after each epoch; it imports nothing
from Optuna or the study layer, so ``hpo train`` and its tests need no study.
"""

from hpo.config import DataConfig, ModelConfig, TrainConfig
from hpo.training._checkpoint import load_checkpoint, save_checkpoint
from hpo.training._data import DATASETS, SYNTHETIC_DEFAULTS, Data, Split, check_data, load_data
from hpo.training._init import INITS, apply_init
from hpo.training._loader import DeviceBatches, random_crop, random_flip
from hpo.training._models import (
    MODELS,
    build_model,
    check_model,
    check_model_name,
    mark_closing,
    model_entry,
)
from hpo.training._optimizers import OPTIMIZERS, build_optimizer, param_groups
from hpo.training._schedules import SCHEDULES, lr_at
from hpo.training._trainer import EpochMetrics, TrainResult, pick_device, train

__all__ = [
    "DATASETS",
    "INITS",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "SYNTHETIC_DEFAULTS",
    "Data",
    "DataConfig",
    "DeviceBatches",
    "EpochMetrics",
    "ModelConfig",
    "Split",
    "TrainConfig",
    "TrainResult",
    "apply_init",
    "build_model",
    "build_optimizer",
    "check_data",
    "check_model",
    "check_model_name",
    "load_data",
    "model_entry",
    "load_checkpoint",
    "lr_at",
    "mark_closing",
    "param_groups",
    "pick_device",
    "random_crop",
    "random_flip",
    "save_checkpoint",
    "train",
]
