"""Gradient flow per stage of the network, measured on the device while it trains.

Why a recipe wins often shows in how gradients travel through depth: whether the first layers
still receive a gradient (vanishing) or receive far too much (exploding), and how far each
stage's weights move. After every epoch this gives, per stage (the stem, each residual stage,
the classifier):

- ``grad_norm``: the L2 norm of the stage's gradient, root-mean-square over the epoch's steps;
- ``weight_norm``: the L2 norm of the stage's weights at the end of the epoch;
- ``update_ratio``: ||w_end - w_start|| / ||w_start|| over the epoch;
- ``ratio``: the first stage's gradient norm (the stem's) over the last residual stage's, the
  path a gradient travels back through every block. Below :data:`VANISHING` it vanishes on its
  way down; above :data:`EXPLODING` it explodes. (The classifier is left out of the ratio: its
  gradient is set by the loss directly, not by depth.)

Cost: per step, one ``_foreach_norm`` over the gradients and one ``index_add_`` into a small
device tensor; nothing is read on the host until the epoch ends (with the loss), so there is
no extra host sync per step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from hpo.limits import EXPLODING, VANISHING

__all__ = ["EXPLODING", "VANISHING", "GradientFlow", "flow_clause", "flow_state",
           "stage_of_parameters"]


def stage_of_parameters(model: nn.Module) -> tuple[list[str], list[int]]:
    """(stage names in depth order, the stage index of every parameter in ``model.parameters()``
    order). Residual blocks carry a ``stage`` attribute (set by :mod:`hpo.training._models`);
    linear layers are the classifier; the rest is the stem before the first stage and the head
    (grouped with the classifier) after it."""
    owner: dict[int, str] = {}
    for module in model.modules():
        stage = getattr(module, "stage", None)
        if stage is not None:
            for p in module.parameters():
                owner[id(p)] = f"stage{stage}"
        elif isinstance(module, nn.Linear):
            for p in module.parameters(recurse=False):
                owner[id(p)] = "classifier"
    seen_stage, labels = False, []
    for p in model.parameters():
        label = owner.get(id(p))
        if label is None:
            label = "classifier" if seen_stage else "stem"
        seen_stage = seen_stage or label.startswith("stage")
        labels.append(label)
    stages = sorted({label for label in labels if label.startswith("stage")},
                    key=lambda s: int(s[5:]))
    names = ["stem", *stages, "classifier"]
    return names, [names.index(label) for label in labels]


class GradientFlow:
    """Accumulates one epoch's per-stage gradient norms on the device.

    Call :meth:`start_epoch`, then :meth:`after_backward` after every backward pass, then
    :meth:`end_epoch`, which returns the epoch's figures (the one host read).
    """

    def __init__(self, model: nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        names, index = stage_of_parameters(model)
        keep = [i for p, i in zip(model.parameters(), index, strict=True) if p.requires_grad]
        self.names = names
        device = self.params[0].device
        self.index = torch.tensor(keep, device=device)
        self.sum_sq = torch.zeros(len(names), device=device)
        self.steps = 0
        self.start: list[torch.Tensor] = []

    def start_epoch(self) -> None:
        self.sum_sq.zero_()
        self.steps = 0
        self.start = [p.detach().clone() for p in self.params]

    def after_backward(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            grads = [g if g is not None else torch.zeros_like(p)
                     for g, p in zip(grads, self.params, strict=True)]
        norms = torch.stack(torch._foreach_norm(grads))  # noqa: SLF001 - one kernel per group
        self.sum_sq.index_add_(0, self.index, norms.float().square())
        self.steps += 1

    def _per_stage(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        sq = torch.stack(torch._foreach_norm(tensors)).float().square()  # noqa: SLF001
        return torch.zeros_like(self.sum_sq).index_add_(0, self.index, sq).sqrt()

    def end_epoch(self) -> dict[str, Any]:
        """The epoch's figures as plain numbers (see the module docstring)."""
        with torch.no_grad():
            grad = (self.sum_sq / max(1, self.steps)).sqrt()
            weights = [p.detach() for p in self.params]
            weight = self._per_stage(weights)
            moved = self._per_stage(torch._foreach_sub(weights, self.start))  # noqa: SLF001
            start = self._per_stage(self.start)
            update = moved / start.clamp_min(1e-12)
            figures = torch.stack([grad, weight, update]).tolist()  # the one host read
        last = len(self.names) - 2  # the last residual stage (the classifier follows it)
        first, deepest = figures[0][0], figures[0][last]
        ratio = first / deepest if deepest > 0 else math.inf
        return {
            "stages": list(self.names),
            "grad_norm": [_round(v) for v in figures[0]],
            "weight_norm": [_round(v) for v in figures[1]],
            "update_ratio": [_round(v) for v in figures[2]],
            "ratio": _round(ratio),
            "state": flow_state(ratio),
        }


def _round(value: float) -> float:
    """Four significant digits: the figures are for reading, and the trial stores them all."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.4g}")


def flow_state(ratio: float) -> str | None:
    """``vanishing``, ``exploding`` or None for a first-to-last ratio."""
    if not math.isfinite(ratio) or ratio > EXPLODING:
        return "exploding"
    if ratio < VANISHING:
        return "vanishing"
    return None


def flow_clause(history: list[dict[str, Any]]) -> str:
    """``; gradients exploding since epoch 2 (first/last stage ratio 3e+02)`` when the last
    epoch was flagged, else empty: appended to a diverged or pruned trial's stop reason."""
    if not history or history[-1]["state"] is None:
        return ""
    state = history[-1]["state"]
    since = len(history)
    while since > 1 and history[since - 2]["state"] == state:
        since -= 1
    return (f"; gradients {state} since epoch {since} (first/last stage gradient ratio "
            f"{history[-1]['ratio']:.2g})")
