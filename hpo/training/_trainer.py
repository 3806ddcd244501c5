"""Trains one resolved :class:`TrainConfig`; calls back after every epoch.

The trainer knows nothing of studies: the callback receives each epoch's metrics and may return
a reason to stop (the study layer uses that for pruning). :func:`train` reads top to bottom:
prepare (data on the device, model, optimizer), restore a checkpoint, then per epoch the steps,
the divergence check, the evaluation, the checkpoint and the callback.
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

from hpo.config import TrainConfig
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


@dataclass
class _Run:
    """What a run trains with, built once: batches on the device, the model and its compiled
    callable, the optimizer, the random stream of shuffles and crops, mixed precision."""

    device: torch.device
    model: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    train_batches: DeviceBatches | HostBatches
    val_batches: DeviceBatches | HostBatches
    test_batches: Callable[[], DeviceBatches | HostBatches]
    generator: torch.Generator
    autocast: torch.autocast
    steps_per_epoch: int
    total_steps: int


def _prepare(config: TrainConfig, data: Data, device: torch.device) -> _Run:
    """Data on the device once (shuffling and augmentation there too), the model and its
    initialization (the global RNG seeds the weights), the optimizer."""
    cuda = device.type == "cuda"
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
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
    model, forward = _model(config, data, device)
    optimizer = build_optimizer(  # the schedule sets each group's lr before every step
        config.optimizer, model, config.lr, config.weight_decay, config.no_decay_bn_bias,
        config.optimizer_params, accelerated=cuda,
    )
    return _Run(device, model, forward, optimizer, train_batches, val_batches,
                lambda: batches(data.test, eval_how, device), generator,
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
                len(train_batches), len(train_batches) * config.epochs)


@dataclass
class _Position:
    """Where the loop stands: the next epoch, steps of it already taken (resumed mid-epoch),
    steps taken in all, and the loss summed over the steps taken in this epoch."""

    epoch: int = 1
    skip_steps: int = 0
    step: int = 0
    loss_carry: float = 0.0


def _restore(resume: Mapping[str, Any], run: _Run, result: TrainResult) -> _Position:
    """Continues exactly where a saved state stopped: weights, optimizer, random streams."""
    run.model.load_state_dict(resume["model"])
    run.optimizer.load_state_dict(resume["optimizer"])
    torch.set_rng_state(resume["torch_rng"])
    run.generator.set_state(resume["epoch_rng"])
    result.history = [EpochMetrics(**m) for m in resume["history"]]
    result.resumed_from_epoch = len(result.history)
    return _Position(resume["next_epoch"], resume["step_in_epoch"], resume["global_step"],
                     resume["loss_sum"])


def _state(config: TrainConfig, run: _Run, result: TrainResult, at: _Position,
           epoch_rng: torch.Tensor, elapsed_s: float) -> dict[str, Any]:
    """The whole training state, for a checkpoint: resuming from it replays the run exactly."""
    return {
        "config": config.to_dict(), "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
        "epoch_rng": epoch_rng, "next_epoch": at.epoch, "step_in_epoch": at.skip_steps,
        "global_step": at.step, "loss_sum": at.loss_carry,
        "history": [dataclasses.asdict(m) for m in result.history], "elapsed_s": elapsed_s,
    }


def _steps(config: TrainConfig, run: _Run, at: _Position, flow: GradientFlow | None,
           should_stop: Callable[[], bool] | None) -> tuple[torch.Tensor, float, int | None]:
    """One epoch's optimizer steps from ``at`` (advanced in place): (the loss summed on the
    device, the last lr, the step index where ``should_stop`` interrupted it or None)."""
    run.model.train()
    loss_sum = torch.full((), at.loss_carry, device=run.device)
    lr = config.lr
    for i, (x, y) in enumerate(run.train_batches):
        if i < at.skip_steps:
            continue  # resumed mid-epoch: these steps are in the checkpoint already
        if should_stop is not None and should_stop():
            return loss_sum, lr, i
        lr = lr_at(at.step, run.total_steps, run.steps_per_epoch, config.lr, config.schedule,
                   config.schedule_params)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        with run.autocast:
            loss = F.cross_entropy(run.forward(x).float(), y,
                                   label_smoothing=config.label_smoothing)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if flow is not None:
            flow.after_backward()
        run.optimizer.step()
        loss_sum += loss.detach()
        at.step += 1
    return loss_sum, lr, None


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
    result = TrainResult("completed", "completed all epochs", str(device))
    data = data or load_data(config.data)
    run = _prepare(config, data, device)
    at = _restore(resume, run, result) if resume else _Position()
    diverged_above = DIVERGENCE_FACTOR * math.log(data.num_classes)  # blown up, above it
    flow = GradientFlow(run.model) if config.diagnostics else None
    for epoch in range(at.epoch, config.epochs + 1):
        epoch_rng = run.generator.get_state()  # replaying it replays the shuffle and crops
        if flow is not None:
            flow.start_epoch()
        loss_sum, lr, stopped_at = _steps(config, run, at, flow, should_stop)
        if stopped_at is not None:
            result.status = "interrupted"
            result.stop_reason = (f"interrupted in epoch {epoch} after {stopped_at} of "
                                  f"{run.steps_per_epoch} steps")
            if save_state:
                here = _Position(epoch, stopped_at, at.step, loss_sum.item())
                save_state(_state(config, run, result, here, epoch_rng,
                                  time.perf_counter() - start))
            break
        at.skip_steps, at.loss_carry = 0, 0.0
        train_loss = loss_sum.item() / run.steps_per_epoch  # the epoch's one host sync
        figures = flow.end_epoch() if flow is not None else None
        flows = [m.flow for m in result.history if m.flow]
        if not math.isfinite(train_loss) or train_loss > diverged_above:
            result.status, result.stop_reason = "diverged", (
                f"diverged: training loss {train_loss:.3g} in epoch {epoch} is non-finite or "
                f"above {diverged_above:.3g} ({DIVERGENCE_FACTOR:g}x chance level; lr "
                f"{lr:.3g}){flow_clause(flows + ([figures] if figures else []))}")
            break
        val_loss, val_accuracy = evaluate(run.forward, run.val_batches, run.autocast, device)
        metrics = EpochMetrics(epoch, train_loss, val_loss, val_accuracy, lr,
                               time.perf_counter() - start, figures)
        result.history.append(metrics)
        flows = [m.flow for m in result.history if m.flow]
        if not math.isfinite(val_loss):
            result.status, result.stop_reason = (
                "diverged", f"diverged: non-finite validation loss in epoch {epoch}"
                            f"{flow_clause(flows)}")
            break
        if save_state:
            save_state(_state(config, run, result, _Position(epoch + 1, 0, at.step, 0.0),
                              run.generator.get_state(), time.perf_counter() - start))
        reason = on_epoch(metrics) if on_epoch else None
        if reason:
            result.status, result.stop_reason = "stopped", reason + flow_clause(flows)
            break
    if data.test is not None and result.status == "completed":
        result.test_loss, result.test_accuracy = evaluate(run.forward, run.test_batches(),
                                                          run.autocast, device)
    result.wall_time_s = time.perf_counter() - start
    return result
