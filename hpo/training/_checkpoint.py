"""Checkpoint files: written atomically, so a crash never leaves half a checkpoint behind.

A checkpoint is the trainer's whole state (see :func:`hpo.training.train`): model, optimizer,
every RNG state, position in the run, metrics so far. Resuming from it gives the same result as
an uninterrupted run on the CPU.

It holds tensors and plain values only (dicts, lists, numbers, strings; RNG states as
tensors) and is read with ``weights_only=True``: checkpoints sit on file systems that many
machines share, and a full pickle would run whatever code a file names as every worker that
resumes from it.
"""

from __future__ import annotations

import os
import pickle
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
    """Reads a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU).

    A file that needs anything beyond tensors and plain values (a pickle that would import or
    call code) raises ``pickle.UnpicklingError`` and runs nothing; so does a damaged file.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"not a checkpoint: holds a {type(state).__name__}")
    return state
