"""Residual networks: He et al. 2016 CIFAR ResNets, a pre-activation ResNet-18, torchvision's.

``build_model`` maps a name to a network. Every block marks the layer that closes its residual
branch (:func:`mark_closing`) so that zero-init-residual needs no knowledge of the architecture;
the mark is a plain attribute, so no layer is registered twice and ``state_dict`` keys stay
those of the architecture (torchvision's, for its models).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from hpo.config import ModelConfig
from hpo.errors import UserError
from hpo.training._imported import is_import_path, resolve

CLOSES_RESIDUAL = "closes_residual"

M = TypeVar("M", bound=nn.Module)


def mark_closing(module: M) -> M:
    """Marks ``module`` as the last layer of a residual branch (zeroed by zero-init-residual)."""
    setattr(module, CLOSES_RESIDUAL, True)
    return module


def closes_residual(module: nn.Module) -> bool:
    return bool(getattr(module, CLOSES_RESIDUAL, False))


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; shortcut A (identity, subsample, zero-pad) or B (1x1 projection).

    ``residual=False`` drops the shortcut (a plain block, He et al. 2016's control);
    ``norm="none"`` drops the BatchNorms, and the branch's last convolution is then the layer
    that zero-init-residual zeroes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str,
                 residual: bool = True, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, c_out)
        mark_closing(self.bn2 if norm == "batch" else self.conv2)
        self.residual = residual
        self.project: nn.Module | None = None
        self.pad = 0
        self.stride = stride
        if residual and (stride != 1 or c_in != c_out):
            if shortcut == "B":
                self.project = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out)
                )
            else:
                self.pad = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if not self.residual:
            return F.relu(out)
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
        self, depth: int, in_channels: int, num_classes: int, width: int, shortcut: str,
        residual: bool = True, norm: str = "batch",
    ) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = _norm(norm, width)
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                block = BasicBlock(c_in, c_out, stride, shortcut, residual, norm)
                block.stage = stage + 1  # for the per-stage gradient diagnostics
                blocks.append(block)
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
                block = PreActBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1)
                block.stage = stage + 1
                blocks.append(block)
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
        for stage in range(1, 5):
            for block in getattr(model, f"layer{stage}"):
                block.stage = stage
                mark_closing(block.bn3 if hasattr(block, "bn3") else block.bn2)
        return model

    return build


@dataclass(frozen=True)
class ModelEntry:
    """One architecture, or a family of them matched by a pattern.

    Attributes:
        build: (model config, input channels, classes) -> network.
        cifar_options: the network understands ``shortcut``, ``width``, ``residual`` and
            ``norm`` (the CIFAR ResNets); the spec refuses them for the others.
        shown: the name the "allowed" list shows.
    """

    build: Callable[[ModelConfig, int, int], nn.Module]
    cifar_options: bool = False
    shown: str = ""


def _cifar(config: ModelConfig, in_channels: int, num_classes: int) -> nn.Module:
    depth = int(config.name.removeprefix("resnet"))
    return CifarResNet(depth, in_channels, num_classes, config.width, config.shortcut,
                       config.residual, config.norm)


def _tv(name: str) -> ModelEntry:
    return ModelEntry(lambda config, c, k: _torchvision(name)(c, k))


# One table: exact names first; the CIFAR family as a pattern (any depth 6n+2 >= 8).
MODELS: dict[str, ModelEntry] = {
    "preact_resnet18": ModelEntry(lambda config, c, k: PreActResNet18(c, k)),
    "resnet18": _tv("resnet18"),
    "resnet34": _tv("resnet34"),
    "resnet50": _tv("resnet50"),
}
_CIFAR = re.compile(r"resnet(\d+)$")
CIFAR_FAMILY = ModelEntry(_cifar, cifar_options=True,
                          shown="resnet20/32/44/56/110 (any depth 6n+2 >= 8)")


def _imported(config: ModelConfig, in_channels: int, num_classes: int) -> nn.Module:
    factory = resolve(config.name, "model.name")
    try:
        model = factory(in_channels, num_classes, **config.options)
    except Exception as e:  # the user's factory may fail in any way
        raise UserError(f"model.name: {config.name} fails when called with ({in_channels}, "
                        f"{num_classes}, **model.options) ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.name: {config.name} returned a {type(model).__name__}, not a "
                        "torch.nn.Module")
    return model


IMPORTED = ModelEntry(_imported, shown="'package.module:factory' (your own network)")


def model_entry(name: str) -> ModelEntry | None:
    """The table entry for ``name``, or None when no entry or pattern matches."""
    if is_import_path(name):
        return IMPORTED
    if name in MODELS:
        return MODELS[name]
    match = _CIFAR.match(name)
    if match and int(match.group(1)) >= 8 and (int(match.group(1)) - 2) % 6 == 0:
        return CIFAR_FAMILY
    return None


def check_model_name(name: str) -> str | None:
    """None when ``name`` is a known model, else a sentence saying what is allowed."""
    if model_entry(name) is not None:
        return None
    return "one of " + ", ".join([CIFAR_FAMILY.shown, *MODELS, IMPORTED.shown])


def build_model(config: ModelConfig, in_channels: int, num_classes: int) -> nn.Module:
    """The network named by ``config``, sized for the data's channels and classes."""
    entry = model_entry(config.name)
    if entry is None:
        raise UserError(f"model.name: unknown model {config.name!r}; allowed: "
                        f"{check_model_name(config.name)}")
    return entry.build(config, in_channels, num_classes)


def check_model(config: ModelConfig, in_channels: int, num_classes: int,
                sample: torch.Tensor) -> None:
    """Builds the network once and runs ``sample`` (two images) through it, before any trial
    exists: a factory that returns the wrong thing is one line naming the key, not a failure
    in every trial."""
    model = build_model(config, in_channels, num_classes)
    try:
        with torch.no_grad():
            out = model.eval()(sample)
    except Exception as e:  # the user's network may fail in any way
        raise UserError(f"model.name: {config.name} fails on a batch of the data "
                        f"{tuple(sample.shape)} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"model.name: {config.name} returns {got} for a batch of "
                        f"{len(sample)}; expected logits of shape ({len(sample)}, {num_classes})")
