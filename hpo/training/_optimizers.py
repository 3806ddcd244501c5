"""Optimizers: one table maps a name to a constructor, its defaults and its search ranges.

Like timm's registry, a new optimizer is one entry. The search space, the trainer and the spec
checks all read :data:`OPTIMIZERS`, so they cannot disagree about which settings exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hpo.checks import NON_NEGATIVE, POSITIVE, UNIT_CLOSED, UNIT_HALF_OPEN, Rule
from hpo.training._tables import lookup

Builder = Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True, kw_only=True)
class OptimizerEntry:
    """One optimizer family.

    Attributes:
        build: (param groups, lr, settings) -> optimizer; weight decay is set per group.
        lr_range: default log-uniform search range of the learning rate.
        wd_range: default log-uniform search range of the weight decay.
        params: the family's own settings and their defaults; the spec may fix or search them.
        fused: torch has a fused (single-kernel) implementation; others use ``foreach``.
    """

    build: Builder
    lr_range: tuple[float, float]
    wd_range: tuple[float, float]
    params: Mapping[str, Any] = field(default_factory=dict)
    fused: bool = False


def _betas(p: Mapping[str, Any]) -> tuple[float, float]:
    return (float(p["beta1"]), float(p["beta2"]))


_ADAM_PARAMS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

# Every optimizer setting a spec may fix or search, with the values it may take.
OPTIMIZER_SETTINGS: dict[str, Rule] = {
    "lr": Rule("float", bound=POSITIVE),
    "weight_decay": Rule("float", bound=NON_NEGATIVE),
    "momentum": Rule("float", bound=UNIT_HALF_OPEN),
    "beta1": Rule("float", bound=UNIT_HALF_OPEN),
    "beta2": Rule("float", bound=UNIT_HALF_OPEN),
    "eps": Rule("float", bound=POSITIVE),
    "alpha": Rule("float", bound=UNIT_CLOSED),
}
_SGD_RANGES = {"lr_range": (1e-3, 1.0), "wd_range": (1e-5, 1e-3)}
_ADAPTIVE_RANGES = {"lr_range": (1e-5, 1e-2), "wd_range": (1e-6, 1e-3)}

OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.SGD(g, lr=lr, momentum=p["momentum"], **k),
        **_SGD_RANGES, params={"momentum": 0.9}, fused=True,
    ),
    "nesterov": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.SGD(g, lr=lr, momentum=p["momentum"],
                                                   nesterov=True, **k),
        **_SGD_RANGES, params={"momentum": 0.9}, fused=True,
    ),
    "adam": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.Adam(g, lr=lr, betas=_betas(p), eps=p["eps"],
                                                    **k),
        **_ADAPTIVE_RANGES, params=_ADAM_PARAMS, fused=True,
    ),
    # Decoupled weight decay (Loshchilov & Hutter): its own, larger default range.
    "adamw": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.AdamW(g, lr=lr, betas=_betas(p), eps=p["eps"],
                                                     **k),
        lr_range=(1e-5, 1e-2), wd_range=(1e-3, 0.5), params=_ADAM_PARAMS, fused=True,
    ),
    "nadam": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.NAdam(g, lr=lr, betas=_betas(p), eps=p["eps"],
                                                     **k),
        **_ADAPTIVE_RANGES, params=_ADAM_PARAMS,
    ),
    "radam": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.RAdam(g, lr=lr, betas=_betas(p), eps=p["eps"],
                                                     **k),
        **_ADAPTIVE_RANGES, params=_ADAM_PARAMS,
    ),
    "rmsprop": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.RMSprop(
            g, lr=lr, alpha=p["alpha"], eps=p["eps"], momentum=p["momentum"], **k),
        **_ADAPTIVE_RANGES, params={"momentum": 0.9, "alpha": 0.99, "eps": 1e-8},
    ),
    "adagrad": OptimizerEntry(
        build=lambda g, lr, p, **k: torch.optim.Adagrad(g, lr=lr, eps=p["eps"], **k),
        lr_range=(1e-3, 1e-1), wd_range=(1e-6, 1e-3), params={"eps": 1e-10},
    ),
}


def param_groups(
    model: nn.Module, weight_decay: float, no_decay_bn_bias: bool
) -> list[dict[str, Any]]:
    """Parameter groups with weight decay; BN parameters and biases apart when asked.

    As in timm's ``param_groups_weight_decay``, every parameter with at most one dimension
    (biases, BatchNorm gamma and beta) goes to the no-decay group (Bag of Tricks, He et al. 2019).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_bn_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    name: str,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    no_decay_bn_bias: bool,
    params: Mapping[str, Any],
    accelerated: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``; unset family settings take the table's defaults.

    ``accelerated`` (CUDA) picks torch's fused kernels where the family has them, else the
    multi-tensor ``foreach`` path: the same arithmetic in a few kernel launches per step.
    """
    entry = lookup(OPTIMIZERS, name, "optimizer")
    settings = {**entry.params, **params}
    groups = param_groups(model, weight_decay, no_decay_bn_bias)
    speed = ({"fused": True} if entry.fused else {"foreach": True}) if accelerated else {}
    return entry.build(groups, lr, settings, **speed)
