"""Typed reading of spec tables, with errors that name the file, the key and what is allowed.

Every user mistake in a spec becomes one :class:`~hpo.errors.UserError` line of the form
``<file>: <dotted.key>: <what is wrong>; <what is allowed>``. On the ground floor (standard
library only), so that the training core's tables carry the rules of their own settings and the
study layer reads specs with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from hpo.errors import UserError

_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "list": (list,),
}
_KIND_WORDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
    "list": "a list",
}


@dataclass(frozen=True)
class Rule:
    """A value's type, optional allowed names and optional bound (predicate, words)."""

    kind: str
    choices: tuple[Any, ...] | None = None
    bound: tuple[Callable[[Any], bool], str] | None = None


# Bounds used across the spec; the words complete "must be ...".
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
UNIT_OPEN = (lambda v: 0 < v < 1, "in (0, 1)")
UNIT_HALF_OPEN = (lambda v: 0 <= v < 1, "in [0, 1)")
UNIT_CLOSED = (lambda v: 0 <= v <= 1, "in [0, 1]")
AT_LEAST_ONE = (lambda v: v >= 1, ">= 1")
AT_LEAST_TWO = (lambda v: v >= 2, ">= 2")
INCREASING_EPOCHS = (
    lambda v: bool(v) and all(type(e) is int and e >= 1 for e in v)
    and all(a < b for a, b in zip(v, v[1:], strict=False)),
    "a non-empty list of increasing epochs (integers >= 1)",
)


class Checker:
    """Reads values out of parsed TOML for one source file, failing with one clear line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise UserError(f"{self.source}: {key}: {message}")

    def table(
        self, raw: Mapping[str, Any], key: str, path: str, allowed: Iterable[str] | None
    ) -> dict[str, Any]:
        """The sub-table ``raw[key]`` (empty if absent); with ``allowed``, no other keys."""
        full = f"{path}.{key}" if path else key
        value = raw.get(key, {})
        if not isinstance(value, Mapping):
            self.fail(full, f"must be a table ([{full}]), got {_show(value)}")
        if allowed is not None:
            self.no_unknown(value, full, allowed)
        return dict(value)

    def no_unknown(self, table: Mapping[str, Any], path: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for k in table:
            if k not in allowed:
                where = f"{path}.{k}" if path else k
                self.fail(where, f"unknown key; allowed: {', '.join(allowed) or 'none'}")

    def value(self, v: Any, key: str, rule: Rule) -> Any:
        """``v`` checked against ``rule``; ints are widened to float where a number is asked."""
        ok = isinstance(v, _KINDS[rule.kind]) and not (rule.kind != "bool" and isinstance(v, bool))
        if not ok:
            expected = _KIND_WORDS[rule.kind]
            if rule.choices is not None:
                expected = "one of " + ", ".join(map(str, rule.choices))
            self.fail(key, f"must be {expected}, got {_show(v)}")
        if rule.kind == "float":
            v = float(v)
            if not math.isfinite(v):
                self.fail(key, f"must be a finite number, got {v}")
        if rule.choices is not None and v not in rule.choices:
            self.fail(key, f"unknown value {v!r}; allowed: {', '.join(map(str, rule.choices))}")
        if rule.bound is not None and not rule.bound[0](v):
            self.fail(key, f"must be {rule.bound[1]}, got {v}")
        return v

    def get(self, table: Mapping[str, Any], path: str, key: str, rule: Rule, default: Any) -> Any:
        """``table[key]`` checked against ``rule``, or ``default`` when absent."""
        if key not in table:
            return default
        return self.value(table[key], f"{path}.{key}", rule)

    def require(self, table: Mapping[str, Any], path: str, key: str, rule: Rule) -> Any:
        if key not in table:
            self.fail(f"{path}.{key}", f"is required ({_KIND_WORDS[rule.kind]})")
        return self.value(table[key], f"{path}.{key}", rule)

    def options(
        self, table: Mapping[str, Any], path: str, schema: Mapping[str, Rule]
    ) -> dict[str, Any]:
        """Every key of ``table`` checked against ``schema``; unknown keys are an error."""
        self.no_unknown(table, path, schema)
        return {k: self.value(v, f"{path}.{k}", schema[k]) for k, v in table.items()}


def _show(v: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(v), type(v).__name__)
    text = repr(v)
    return f"{kind} {text if len(text) < 40 else text[:37] + '...'}"
