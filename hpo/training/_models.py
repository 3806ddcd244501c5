"""Residual networks: He et al. 2016 CIFAR ResNets, a pre-activation ResNet-18, torchvision's.

``build_model`` maps a name to a network. Every block marks the layer that closes its residual
branch (:func:`mark_closing`) so that zero-init-residual needs no knowledge of the architecture;
the mark is a plain attribute, so no layer is registered twice and ``state_dict`` keys stay
those of the architecture (torchvision's, for its models).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from hpo.errors import UserError
from hpo.training._config import ModelConfig

CLOSES_RESIDUAL = "closes_residual"

M = TypeVar("M", bound=nn.Module)


def mark_closing(module: M) -> M:
    """Marks ``module`` as the last layer of a residual branch (zeroed by zero-init-residual)."""
    setattr(module, CLOSES_RESIDUAL, True)
    return module


def closes_residual(module: nn.Module) -> bool:
    return bool(getattr(module, CLOSES_RESIDUAL, False))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; shortcut A (identity, subsample, zero-pad) or B (1x1 projection)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = mark_closing(nn.BatchNorm2d(c_out))
        self.project: nn.Module | None = None
        self.pad = 0
        self.stride = stride
        if stride != 1 or c_in != c_out:
            if shortcut == "B":
                self.project = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
                )
            else:
                self.pad = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.project is not None:
            short = self.project(x)
        elif self.stride != 1 or self.pad:
            short = x[:, :, :: self.stride, :: self.stride]
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            short = x
        return F.relu(out + short)


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: 6n+2 layers, stages of w/2w/4w filters (w=16 in the paper)."""

    def __init__(
        self, depth: int, in_channels: int, num_classes: int, width: int, shortcut: str
    ) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class PreActBlock(nn.Module):
    """He et al. 2016b (identity mappings): BN-ReLU-conv twice; the branch ends in a conv."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        # No BatchNorm closes a pre-activation branch: its last convolution does.
        self.conv2 = mark_closing(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False))
        self.project = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        short = self.project(out) if self.project is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for 32x32 inputs: a 3x3 stem, stages of 64..512, [2, 2, 2, 2]."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c_in = width
        for stage in range(4):
            c_out = width * 2**stage
            for i in range(2):
                blocks.append(PreActBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    """torchvision's ImageNet ResNet, with its stem rebuilt when the input is not RGB."""

    def build(in_channels: int, num_classes: int) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        for module in model.modules():
            if hasattr(module, "bn3"):
                mark_closing(module.bn3)
            elif hasattr(module, "bn2"):
                mark_closing(module.bn2)
        return model

    return build


_CIFAR = re.compile(r"resnet(\d+)$")
_TORCHVISION = {"resnet18", "resnet34", "resnet50"}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
MODELS = (
    tuple(f"resnet{d}" for d in CIFAR_DEPTHS)
    + ("resnet{6n+2}", "preact_resnet18")
    + tuple(sorted(_TORCHVISION))
)


def check_model_name(name: str) -> str | None:
    """None when ``name`` is a known model, else a sentence saying what is allowed."""
    if name in _TORCHVISION or name == "preact_resnet18":
        return None
    match = _CIFAR.match(name)
    if match and (int(match.group(1)) - 2) % 6 == 0 and int(match.group(1)) >= 8:
        return None
    return "one of " + ", ".join(MODELS) + " (any depth 6n+2 >= 8 for the CIFAR ResNet)"


def build_model(config: ModelConfig, in_channels: int, num_classes: int) -> nn.Module:
    """The network named by ``config``, sized for the data's channels and classes."""
    problem = check_model_name(config.name)
    if problem:
        raise UserError(f"model.name: unknown model {config.name!r}; allowed: {problem}")
    if config.name in _TORCHVISION:
        return _torchvision(config.name)(in_channels, num_classes)
    if config.name == "preact_resnet18":
        return PreActResNet18(in_channels, num_classes)
    depth = int(_CIFAR.match(config.name).group(1))  # type: ignore[union-attr]
    return CifarResNet(depth, in_channels, num_classes, config.width, config.shortcut)
