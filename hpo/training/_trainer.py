"""Trains one resolved :class:`TrainConfig`; calls back after every epoch.

The trainer knows nothing of studies: the callback receives each epoch's metrics and may return
a reason to stop (the study layer uses that for pruning). Reads top to bottom: device, data,
model, optimizer, loop, evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpo.training._config import TrainConfig
from hpo.training._data import Data, load_data
from hpo.training._diagnostics import GradientFlow, flow_clause
from hpo.training._init import apply_init
from hpo.training._loader import Batching, DeviceBatches, HostBatches
from hpo.training._models import build_model
from hpo.training._optimizers import build_optimizer
from hpo.training._schedules import lr_at


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch produced; ``epoch`` counts from 1 and is the step reported to pruners."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    elapsed_s: float
    flow: dict[str, Any] | None = None  # gradient flow per stage (hpo.training._diagnostics)


@dataclass
class TrainResult:
    """How a run ended.

    ``status`` is ``completed`` (all epochs), ``stopped`` (the callback asked), ``diverged``
    (a blown-up loss) or ``interrupted`` (``should_stop`` said so between two steps);
    ``stop_reason`` says the same in words for people.
    """

    status: str
    stop_reason: str
    device: str
    wall_time_s: float = 0.0
    history: list[EpochMetrics] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# A run whose mean training loss over an epoch exceeds this many times ln(classes), the loss of
# a uniform guess, has diverged even when BatchNorm keeps the loss finite.
DIVERGENCE_FACTOR = 10.0

OnEpoch = Callable[[EpochMetrics], "str | None"]
SaveState = Callable[[dict[str, Any]], None]


def pick_device() -> torch.device:
    """CUDA when present (``CUDA_VISIBLE_DEVICES`` picks which), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate(
    model: nn.Module, batches: DeviceBatches | HostBatches, autocast: torch.autocast,
    device: torch.device,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over ``batches``; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    with torch.no_grad(), autocast:
        for x, y in batches:
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    n = len(batches.labels)
    return loss_sum.item() / n, correct.item() / n


# torch.compile'd models of this process, by architecture: compiled once, reused by every trial.
_COMPILED: dict[tuple[object, ...], tuple[nn.Module, nn.Module]] = {}


def _model(config: TrainConfig, data: Data, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(the module that owns the weights, the callable to run): the same unless compiling.

    A compiled model is kept per architecture; a later trial re-runs every layer's
    ``reset_parameters`` under its own seed and then its init scheme, so compiling happens
    once per process however many trials follow.
    """
    torch.manual_seed(config.seed)
    layout = torch.channels_last  # faster convolutions on CUDA and on CPU (oneDNN) alike
    # by value (a user's model carries a dict of options, which does not hash)
    key = (repr(config.model), data.channels, data.num_classes, str(device))
    if config.compile and key in _COMPILED:
        model, compiled = _COMPILED[key]
        # Re-draw the weights in the layout they were first drawn in: random fills follow
        # memory order, and the same seed must give the same weights as a fresh model.
        model.to(memory_format=torch.contiguous_format)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # BatchNorm also resets its running statistics
        apply_init(model, config.init, config.zero_init_residual)
        model.to(memory_format=layout)
        return model, compiled
    model = build_model(config.model, data.channels, data.num_classes)
    apply_init(model, config.init, config.zero_init_residual)
    model = model.to(device, memory_format=layout)
    if not config.compile:
        return model, model
    backend = os.environ.get("HPO_COMPILE_BACKEND", "inductor")
    _COMPILED[key] = (model, torch.compile(model, backend=backend))
    return _COMPILED[key]


def train(
    config: TrainConfig,
    data: Data | None = None,
    on_epoch: OnEpoch | None = None,
    device: torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: Mapping[str, Any] | None = None,
    save_state: SaveState | None = None,
) -> TrainResult:
    """Trains ``config`` and evaluates the validation split after every epoch.

    Args:
        config: the run; ``config.seed`` fixes weights, shuffling and augmentation, so two runs
            on the CPU give identical metrics.
        data: preloaded splits (workers load once per process); loaded from ``config`` if None.
            When it holds a test split, the final model is evaluated on it once, at the end.
        on_epoch: called with each epoch's metrics; returning a string stops the run with that
            string as the reason.
        device: where to train; :func:`pick_device` when None.
        should_stop: polled before every step (a signal flag, not a device sync); when it
            returns True the run ends at that step boundary with status ``interrupted``.
        resume: a state given earlier to ``save_state``; training continues exactly where it
            stopped (same epoch, same step, same random streams).
        save_state: receives the whole training state after every epoch (before ``on_epoch``)
            and when interrupted, for checkpoints.
    """
    start = time.perf_counter() - (resume["elapsed_s"] if resume else 0.0)
    device = device or pick_device()
    cuda = device.type == "cuda"
    result = TrainResult("completed", "completed all epochs", str(device))
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    # --- data: on the device once; shuffling and augmentation there too
    data = data or load_data(config.data)
    generator = torch.Generator(device).manual_seed(config.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    batches = HostBatches if config.data.loader == "dataloader" else DeviceBatches
    train_how = Batching(config.batch_size, data.mean, data.std, train=True,
                         crop_padding=config.data.crop_padding, flip=config.data.flip,
                         channels_last=True)
    eval_how = Batching(max(config.batch_size, 512), data.mean, data.std, channels_last=True)
    train_batches = batches(data.train, train_how, device, generator)
    val_batches = batches(data.val, eval_how, device)

    # --- model and its initialization (the global RNG seeds the weights)
    model, forward = _model(config, data, device)

    # --- optimizer; the schedule sets each group's lr before every step
    optimizer = build_optimizer(
        config.optimizer, model, config.lr, config.weight_decay, config.no_decay_bn_bias,
        config.optimizer_params, accelerated=cuda,
    )
    steps_per_epoch = len(train_batches)
    total_steps = steps_per_epoch * config.epochs
    first_epoch, skip_steps, step, loss_carry = 1, 0, 0, 0.0
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        result.history = [EpochMetrics(**m) for m in resume["history"]]
        result.resumed_from_epoch = len(result.history)
        first_epoch, skip_steps = resume["next_epoch"], resume["step_in_epoch"]
        step, loss_carry = resume["global_step"], resume["loss_sum"]
        generator.set_state(resume["epoch_rng"])

    def state(next_epoch: int, step_in_epoch: int, epoch_rng: torch.Tensor,
              loss_sum: float) -> dict[str, Any]:
        return {
            "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "epoch_rng": epoch_rng, "next_epoch": next_epoch, "step_in_epoch": step_in_epoch,
            "global_step": step, "loss_sum": loss_sum,
            "history": [dataclasses.asdict(m) for m in result.history],
            "elapsed_s": time.perf_counter() - start,
        }

    # --- loop; a loss far above that of a uniform guess means the run has blown up
    diverged_above = DIVERGENCE_FACTOR * math.log(data.num_classes)
    flow = GradientFlow(model) if config.diagnostics else None
    lr = config.lr
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        epoch_rng = generator.get_state()  # replaying it replays the epoch's shuffle and crops
        loss_sum = torch.full((), loss_carry, device=device)
        if flow is not None:
            flow.start_epoch()
        for i, (x, y) in enumerate(train_batches):
            if i < skip_steps:
                continue  # resumed mid-epoch: these steps are in the checkpoint already
            if should_stop is not None and should_stop():
                result.status = "interrupted"
                result.stop_reason = f"interrupted in epoch {epoch} after {i} of " \
                                     f"{steps_per_epoch} steps"
                if save_state:
                    save_state(state(epoch, i, epoch_rng, loss_sum.item()))
                break
            lr = lr_at(step, total_steps, steps_per_epoch, config.lr, config.schedule,
                       config.schedule_params)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                loss = F.cross_entropy(forward(x).float(), y,
                                       label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if flow is not None:
                flow.after_backward()
            optimizer.step()
            loss_sum += loss.detach()
            step += 1
        if result.status == "interrupted":
            break
        skip_steps, loss_carry = 0, 0.0
        train_loss = loss_sum.item() / steps_per_epoch  # the epoch's one host sync
        figures = flow.end_epoch() if flow is not None else None

        # --- evaluation
        if not math.isfinite(train_loss) or train_loss > diverged_above:
            flows = [m.flow for m in result.history if m.flow] + ([figures] if figures else [])
            result.status, result.stop_reason = "diverged", (
                f"diverged: training loss {train_loss:.3g} in epoch {epoch} is non-finite or "
                f"above {diverged_above:.3g} ({DIVERGENCE_FACTOR:g}x chance level; lr "
                f"{lr:.3g}){flow_clause(flows)}"
            )
            break
        val_loss, val_accuracy = evaluate(forward, val_batches, autocast, device)
        metrics = EpochMetrics(
            epoch, train_loss, val_loss, val_accuracy, lr, time.perf_counter() - start, figures
        )
        result.history.append(metrics)
        if not math.isfinite(val_loss):
            result.status, result.stop_reason = (
                "diverged", f"diverged: non-finite validation loss in epoch {epoch}"
                            f"{flow_clause([m.flow for m in result.history if m.flow])}"
            )
            break
        if save_state:
            save_state(state(epoch + 1, 0, generator.get_state(), 0.0))
        reason = on_epoch(metrics) if on_epoch else None
        if reason:
            flows = [m.flow for m in result.history if m.flow]
            result.status, result.stop_reason = "stopped", reason + flow_clause(flows)
            break
    if data.test is not None and result.status == "completed":
        test_batches = batches(data.test, eval_how, device)
        result.test_loss, result.test_accuracy = evaluate(forward, test_batches, autocast, device)
    result.wall_time_s = time.perf_counter() - start
    return result
