"""Networks that fail the way real ones do inside a worker, given to a study by import path.

Each misbehaves only in a worker process (a child of the pool's fork server), never in the
command's own check of the network (:func:`hpo.training.check_model`), so the study starts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

from torch import nn

from studies.own_model import wide_resnet


def _in_worker() -> bool:
    return multiprocessing.parent_process() is not None


def hangs_once(in_channels: int, num_classes: int, flag: str, at_step: int = 12,
               width: int = 8) -> nn.Module:
    """A small ResNet whose forward blocks forever at its ``at_step``-th training step (the
    second epoch of the tests' digits) the first time any worker trains it; creating the
    file ``flag`` records that it did, so the trial's retry trains through."""
    model = wide_resnet(in_channels, num_classes, width=width)
    steps = [0]

    def hook(module: nn.Module, args: object) -> None:
        if not module.training or not _in_worker():
            return
        steps[0] += 1
        if steps[0] != at_step:
            return
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        threading.Event().wait()  # a deadlock: SIGTERM's handler runs, the wait goes on

    model.register_forward_pre_hook(hook)
    return model


def dies_in_worker(in_channels: int, num_classes: int) -> nn.Module:
    """A network whose construction kills its worker (as a segfault in a CUDA kernel would),
    every time."""
    if _in_worker():
        os.kill(os.getpid(), signal.SIGKILL)
    return wide_resnet(in_channels, num_classes, width=4)
