"""The resolved configuration of one training run, on the ground floor: standard library only.

One frozen object describes everything a run needs. The study layer builds it from trial
parameters; ``hpo train`` and exports rebuild it from :meth:`TrainConfig.to_dict` output, so the
dictionary form is the stable contract. Every layer reads configs through these classes (the
review layer via :func:`hpo.record.config_of`), and none of them imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    """Which data, how it is split and augmented.

    Attributes:
        name: dataset name (see :data:`hpo.training.DATASETS`).
        root: directory holding the files (cifar10/cifar100/imagefolder).
        val_fraction: share of the training split held out for validation, in (0, 1).
        split_seed: seed of the train/validation split; fixed per study so all trials compare on
            the same validation images.
        crop_padding: pixels of zero padding before a random crop back to full size; 0 disables.
        flip: random horizontal flips.
        download: fetch cifar10/cifar100 into ``root`` when missing.
        loader: ``device`` (the split lives on the training device, batches and augmentation
            made there) or ``dataloader`` (torch DataLoader, CPU transforms, a host copy per
            batch: for data that should not sit on the device).
        options: dataset-specific settings (synthetic shape, imagefolder image size).
    """

    name: str = "digits"
    root: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    crop_padding: int = 0
    flip: bool = False
    download: bool = False
    loader: str = "device"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Which network.

    Attributes:
        name: from :data:`hpo.training.MODELS`, or an import path (``"pkg.mod:factory"``,
            see :mod:`hpo.training._imported`).
        shortcut, width: CIFAR ResNets only (option A or B; filters of the first stage).
        residual: CIFAR ResNets only: False removes the identity shortcuts (He et al.'s plain
            networks, the control that shows what skip connections buy).
        norm: CIFAR ResNets only: ``batch`` (BatchNorm) or ``none`` (no normalization).
        options: a model given by import path only: keyword arguments of its factory.
    """

    name: str = "resnet20"
    shortcut: str = "A"
    width: int = 16
    residual: bool = True
    norm: str = "batch"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the four searched axes sit at the top level.

    Attributes:
        optimizer: name in :data:`hpo.training.OPTIMIZERS`.
        lr: peak learning rate (after warmup).
        weight_decay: L2 or decoupled decay, as the optimizer defines it.
        optimizer_params: the optimizer's own settings (momentum, betas, eps, ...).
        schedule: name in :data:`hpo.training.SCHEDULES`.
        schedule_params: the schedule's settings (warmup_epochs, milestones, ...).
        init: name in :data:`hpo.training.INITS`.
        zero_init_residual: last BatchNorm gamma of every residual branch set to 0.
        no_decay_bn_bias: BatchNorm parameters and biases are exempt from weight decay.
        epochs: passes over the training split.
        batch_size: images per optimizer step.
        seed: seed of weights, shuffling and augmentation.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        compile: run the model through ``torch.compile``, compiled once per process and
            architecture and reused by later trials (weights re-initialized in place).
        diagnostics: measure the gradient flow per stage every epoch
            (:mod:`hpo.training._diagnostics`).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 1e-4
    optimizer_params: Mapping[str, Any] = field(default_factory=dict)
    schedule: str = "step"
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    init: str = "kaiming_normal"
    zero_init_residual: bool = False
    no_decay_bn_bias: bool = False
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    precision: str = "auto"
    label_smoothing: float = 0.0
    compile: bool = False
    diagnostics: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary; :meth:`from_dict` turns it back into an equal config."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        """Rebuilds a config from :meth:`to_dict` output; unknown keys are an error."""
        raw = dict(raw)
        data = DataConfig(**raw.pop("data", {}))
        model = ModelConfig(**raw.pop("model", {}))
        return cls(data=data, model=model, **raw)


def _plain(value: Any) -> Any:
    """Mappings to dicts and tuples to lists, recursively, so the result is plain JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
