"""The one lookup every table of the training core uses (optimizers, schedules, inits,
datasets), so an unknown name reads the same everywhere: the key, the name, what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from hpo.errors import UserError

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: str, key: str) -> V:
    """``table[name]``, or a one-line UserError naming ``key`` and the allowed names."""
    if name not in table:
        raise UserError(f"{key}: unknown value {name!r}; allowed: {', '.join(table)}")
    return table[name]
