"""The objective: one Optuna trial -> one resolved config -> one training run.

Everything a later reader needs goes into the trial's user attributes: ``config`` (the full
resolved configuration), ``curve`` (per-epoch losses and accuracy), ``epochs_run``,
``wall_time_s``, ``device``, ``host``, ``worker_pid`` and ``stop_reason``. A run stopped by
the pruner or by a diverging loss ends PRUNED with its reason; an exception ends FAIL with its
reason, and the worker carries on with the next trial.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import optuna
import torch

from hpo.study._space import suggest_config
from hpo.study._spec import StudySpec
from hpo.training import Data, EpochMetrics, TrainResult, load_data, train


class TrialInterrupted(Exception):
    """The worker was asked to stop (SIGINT/SIGTERM); the trial ends FAIL with that reason."""


class Objective:
    """Callable for ``Study.optimize``; loads the data once per worker process.

    Args:
        spec: the study's spec.
        device: where trials train.
        should_stop: the worker's stop flag, polled by the trainer between steps.
    """

    def __init__(self, spec: StudySpec, device: torch.device,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.spec = spec
        self.device = device
        self.should_stop = should_stop
        self._data: Data | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        spec = self.spec
        config = suggest_config(trial, spec.space, spec.base)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("device", str(self.device))
        curve: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}

        def on_epoch(m: EpochMetrics) -> str | None:
            value = getattr(m, spec.metric)
            trial.report(value, m.epoch)
            for key, values in curve.items():
                values.append(getattr(m, key))
            trial.set_user_attr("curve", curve)
            trial.set_user_attr("epochs_run", m.epoch)
            if trial.should_prune():
                return f"pruned by the {spec.pruner} pruner after epoch {m.epoch} " \
                       f"({spec.metric} {value:.4f})"
            return None

        try:
            if self._data is None:
                self._data = load_data(spec.base.data)
            result = train(config, self._data, on_epoch, self.device, self.should_stop)
        except Exception as e:
            trial.set_user_attr("stop_reason", f"error: {type(e).__name__}: {e}")
            raise
        _record(trial, result)
        if result.status == "interrupted":
            trial.study.stop()
            raise TrialInterrupted(result.stop_reason)
        if result.status != "completed":
            raise optuna.TrialPruned(result.stop_reason)
        return float(getattr(result.history[-1], spec.metric))


def _record(trial: optuna.Trial, result: TrainResult) -> None:
    trial.set_user_attr("epochs_run", result.epochs_run)
    trial.set_user_attr("wall_time_s", round(result.wall_time_s, 3))
    trial.set_user_attr("stop_reason", result.stop_reason)
