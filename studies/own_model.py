"""Your own network and data in an hpo study: the example beside `studies/own-model.toml`.

hpo calls ``wide_resnet(in_channels, num_classes, **[model.options])`` for the network and
``load(with_test, **other [data] keys)`` for the data (the protocol: README, "Your own network
and data"). The marks are optional: ``stage`` on a residual block gives per-stage gradient
diagnostics, ``mark_closing`` on a branch's last layer lets ``zero_init_residual`` zero it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hpo.training import mark_closing


class Block(nn.Module):
    """Two 3x3 convolutions around an identity shortcut."""

    def __init__(self, channels: int, stage: int) -> None:
        super().__init__()
        self.stage = stage  # hpo's gradient diagnostics group parameters by this
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = mark_closing(nn.BatchNorm2d(channels))  # zeroed by zero_init_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


def wide_resnet(in_channels: int, num_classes: int, width: int = 32,
                blocks: int = 1) -> nn.Module:
    """A two-stage wide ResNet for small images: ``blocks`` blocks of ``width`` filters, then
    ``blocks`` of ``2 * width`` at half the resolution."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU()]
    layers += [Block(width, 1) for _ in range(blocks)]
    layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
               nn.BatchNorm2d(2 * width), nn.ReLU()]
    layers += [Block(2 * width, 2) for _ in range(blocks)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes)]
    return nn.Sequential(*layers)


def load(with_test: bool, noise: float = 0.0) -> dict:
    """scikit-learn's 8x8 digits as floats in [0, 1] (1 x 8 x 8), with optional Gaussian pixel
    ``noise``; a fixed fifth is the test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    rng = np.random.default_rng(0)
    if noise:
        images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
    order = rng.permutation(len(images))
    test, train = order[: len(order) // 5], order[len(order) // 5:]
    out = {"train": (images[train], digits.target[train])}
    if with_test:
        out["test"] = (images[test], digits.target[test])
    return out
