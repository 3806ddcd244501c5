"""Checkpoint files: written atomically, so a crash never leaves half a checkpoint behind.

A checkpoint is the trainer's whole state (see :func:`hpo.training.train`): model, optimizer,
every RNG state, position in the run, metrics so far. Resuming from it gives the same result as
an uninterrupted run on the CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Writes ``state`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=False)
