"""Users' own networks and data, named by import path (``"package.module:function"``).

A spec may name ``model.name = "mynets:wide_resnet"`` or ``data.name = "mydata:load"`` instead
of a table entry; everything else hpo adds (init schemes, checkpoints, diagnostics, device-
resident data, export and retrain) works on what they return. The protocol:

- **model factory** ``factory(in_channels: int, num_classes: int, **options) -> nn.Module``;
  ``options`` is the spec's ``[model.options]`` table. The network's output is (batch,
  classes) logits. Optional marks: a residual block sets ``block.stage = k`` (k = 1, 2, ...)
  so the gradient diagnostics report per stage (without marks: the whole network before the
  classifier is one "stem" group), and the last layer of a residual branch is marked with
  :func:`hpo.training.mark_closing` (or the attribute ``closes_residual = True``) so that
  ``zero_init_residual`` zeroes it.
- **data loader** ``load(with_test: bool, **options) -> dict`` with ``"train": (images,
  labels)`` and, when ``with_test``, ``"test": (images, labels)``; images are (N, C, H, W)
  uint8 (0..255) or floating point in [0, 1], labels integers 0..classes-1; ``options`` are the
  spec's other ``[data]`` keys. hpo carves the validation split from ``train`` itself and reads
  ``test`` only for finalists and replicates.

The module must be importable: installed, on ``PYTHONPATH``, or under the directory hpo runs
from (which is searched too).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import sys
from typing import Any

from hpo.errors import UserError


def is_import_path(name: str) -> bool:
    return ":" in name


class _Unusable(Exception):
    """Why an import path names nothing callable (a message without the key)."""


def _find(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise _Unusable(f"{path!r} is not an import path; write 'package.module:function'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # the directory hpo runs from, as ``python -m`` would
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as e:  # the user's module may fail in any way while importing
        raise _Unusable(f"cannot import {module_name!r} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); install it or put it "
                        "on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise _Unusable(f"module {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _Unusable(f"{path!r} is a {type(target).__name__}, not a function")
    return target


def resolve(path: str, key: str) -> Any:
    """The callable ``path`` names; a one-line UserError naming ``key`` when it cannot be had."""
    try:
        return _find(path)
    except _Unusable as e:
        raise UserError(f"{key}: {e}") from None


def problem(path: str) -> str | None:
    """Why ``path`` names nothing callable, or None when it does."""
    try:
        _find(path)
    except _Unusable as e:
        return str(e)
    return None


def origin(path: str) -> dict[str, Any]:
    """Where ``path``'s code came from, for an export's provenance: the import path, the
    distribution's version when it is installed as one, and the module file's SHA-256."""
    module = importlib.import_module(path.partition(":")[0])
    top = module.__name__.split(".")[0]
    try:
        version: str | None = importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        version = None
    file = getattr(module, "__file__", None)
    digest = None
    if file:
        with open(file, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    return {"import_path": path, "version": version, "sha256": digest}


def code_of(model_name: str, data_name: str) -> dict[str, Any]:
    """The origin of each import path among a config's model and data names (empty when both
    are hpo's own), recorded on every trial so that an export names the code it trained."""
    return {key: origin(name) for key, name in (("model", model_name), ("data", data_name))
            if is_import_path(name)}
