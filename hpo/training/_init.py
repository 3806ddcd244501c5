"""Weight initialization schemes: one table maps a name to what it does to a weight tensor.

Schemes apply to every convolution and linear weight; biases start at 0 and BatchNorm at
gamma=1, beta=0, except ``default``, which keeps PyTorch's own initialization untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hpo.errors import UserError

InitFn = Callable[[torch.Tensor], object]

INITS: dict[str, InitFn | None] = {
    # He et al. 2015 as used by He et al. 2016 and torchvision: std = sqrt(2 / fan_out).
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    # bound = sqrt(6 / fan_in)
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
    # Glorot & Bengio 2010: std = sqrt(2 / (fan_in + fan_out))
    "xavier_normal": nn.init.xavier_normal_,
    # bound = sqrt(6 / (fan_in + fan_out))
    "xavier_uniform": nn.init.xavier_uniform_,
    # Saxe et al. 2014: rows of the flattened weight are orthonormal
    "orthogonal": nn.init.orthogonal_,
    # PyTorch's layer defaults: kaiming_uniform with a=sqrt(5), i.e. bound = 1 / sqrt(fan_in)
    "default": None,
}


def apply_init(model: nn.Module, scheme: str, zero_init_residual: bool) -> None:
    """Initializes ``model`` in place with ``scheme``; optionally zeroes residual-closing BNs.

    Zeroing the last BatchNorm gamma of each residual branch makes every block start as the
    identity (Goyal et al. 2017), which the study treats as its own search dimension.
    """
    if scheme not in INITS:
        raise UserError(f"init: unknown scheme {scheme!r}; allowed: {', '.join(INITS)}")
    fn = INITS[scheme]
    if fn is not None:
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fn(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            last_bn = getattr(module, "last_bn", None)
            if isinstance(last_bn, nn.BatchNorm2d):
                nn.init.zeros_(last_bn.weight)
