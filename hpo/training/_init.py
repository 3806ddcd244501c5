"""Weight initialization schemes: one table maps a name to what it does to a convolution weight.

A scheme sets every convolution weight; BatchNorm starts at gamma=1, beta=0 and biases at 0.
``default`` re-draws every layer with PyTorch's own ``reset_parameters`` (so torchvision's
models get PyTorch's layer defaults too, not torchvision's init).

The classifier (the final linear layer) is not a scheme's business: it starts at N(0, 0.01^2)
with zero bias under every scheme (Goyal et al. 2017), so that every network's first loss is
ln(classes), the loss of a uniform guess. Applying fan_out Kaiming to it (std sqrt(2/classes))
would start ResNet-20 at a loss of about 9.7 instead of 2.3; He et al. and torchvision apply
their convolution init to convolutions only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hpo.training._models import closes_residual
from hpo.training._tables import lookup

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

CLASSIFIER_STD = 0.01


def apply_init(model: nn.Module, scheme: str, zero_init_residual: bool) -> None:
    """Initializes ``model`` in place with ``scheme``; optionally zeroes residual branches.

    Zeroing the layer that closes each residual branch (the last BatchNorm gamma, or the last
    convolution of a pre-activation block) makes every block start as the identity (Goyal et
    al. 2017), which the study treats as its own search dimension.
    """
    fn = lookup(INITS, scheme, "init")
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if fn is None:
                module.reset_parameters()
            else:
                fn(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # gamma 1, beta 0, fresh running statistics
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=CLASSIFIER_STD)
            nn.init.zeros_(module.bias)
    if zero_init_residual:
        for module in model.modules():
            if closes_residual(module):
                nn.init.zeros_(module.weight)
