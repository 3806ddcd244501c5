"""The search space: what each dimension may take, and how a trial turns into a TrainConfig.

Dimensions come in three forms, written the same way everywhere in ``[search]``:
a scalar fixes the value, a list is a categorical choice, and a table ``{low, high, log, step}``
is a numeric range. Optimizer and schedule settings are conditional: ``sgd.momentum`` is asked
for only in trials that picked ``sgd``. Defaults come from the training tables (per-family lr
and weight-decay ranges, every other setting fixed at its default), so a spec names only what
it wants to change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from hpo.checks import (
    POSITIVE,
    UNIT_HALF_OPEN,
    Checker,
    Rule,
)
from hpo.training import INITS, OPTIMIZERS, SCHEDULES, TrainConfig, check_model_name
from hpo.training._optimizers import OPTIMIZER_SETTINGS
from hpo.training._schedules import SCHEDULE_SETTINGS


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None


Dim = Fixed | Choice | Range

# The top-level axes of the study: each is fixed or a choice, never a range.
AXES: dict[str, Rule] = {
    "optimizer": Rule("str", choices=tuple(OPTIMIZERS)),
    "schedule": Rule("str", choices=tuple(SCHEDULES)),
    "init": Rule("str", choices=tuple(INITS)),
    "zero_init_residual": Rule("bool"),
    "no_decay_bn_bias": Rule("bool"),
}
# Axes a spec may search beyond the recipe, for controlled studies (depth, skip connections,
# label smoothing); absent from [search], they keep the [model] / [training] value.
CONTROLS: dict[str, Rule] = {
    "model": Rule("str"),  # a model name (checked against the model table)
    "residual": Rule("bool"),
    "label_smoothing": Rule("float", bound=UNIT_HALF_OPEN),
}

# Every optimizer and schedule setting: the rules live with the tables that define them.
PARAMS: dict[str, Rule] = {**OPTIMIZER_SETTINGS, **SCHEDULE_SETTINGS}


def entry_params(name: str) -> tuple[str, ...]:
    """The settings of optimizer or schedule ``name``, in table order."""
    if name in OPTIMIZERS:
        return ("lr", "weight_decay", *OPTIMIZERS[name].params)
    return tuple(SCHEDULES[name].params)


@dataclass(frozen=True)
class SearchSpace:
    """The parsed ``[search]`` table.

    Attributes:
        axes: optimizer, schedule, init and the two switches.
        shared: settings given at the top of ``[search]``; they apply to every optimizer or
            schedule that has them.
        per_entry: ``[search.<optimizer or schedule>]`` tables, overriding ``shared``.
    """

    axes: Mapping[str, Dim]
    shared: Mapping[str, Dim]
    per_entry: Mapping[str, Mapping[str, Dim]]

    def dim(self, entry: str, param: str) -> Dim:
        """The dimension of ``param`` for optimizer or schedule ``entry``, defaults applied."""
        if param in self.per_entry.get(entry, {}):
            return self.per_entry[entry][param]
        if param in self.shared:
            return self.shared[param]
        if entry in OPTIMIZERS:
            opt = OPTIMIZERS[entry]
            if param == "lr":
                return Range(*opt.lr_range, log=True)
            if param == "weight_decay":
                return Range(*opt.wd_range, log=True)
            return Fixed(opt.params[param])
        return Fixed(SCHEDULES[entry].params[param])

    def choices(self, axis: str) -> tuple[Any, ...]:
        d = self.axes[axis]
        return d.values if isinstance(d, Choice) else (d.value,)  # type: ignore[union-attr]




def parse_dim(check: Checker, raw: Any, key: str, rule: Rule, ranges: bool = True) -> Dim:
    """One dimension from its TOML form: scalar, non-empty list, or {low, high, log, step}."""
    if isinstance(raw, list):
        if not raw:
            check.fail(key, "empty choice list; give at least one value")
        values = tuple(check.value(v, f"{key}[{i}]", rule) for i, v in enumerate(raw))
        if len(set(values)) != len(values):
            check.fail(key, "choice list repeats a value")
        return Choice(values)
    if isinstance(raw, Mapping):
        if not ranges or rule.kind not in ("int", "float"):
            check.fail(key, "must be a single value or a list of choices, not a range")
        check.no_unknown(raw, key, ("low", "high", "log", "step"))
        low = check.require(raw, key, "low", rule)
        high = check.require(raw, key, "high", rule)
        log = check.get(raw, key, "log", Rule("bool"), False)
        step = check.get(raw, key, "step", Rule(rule.kind, bound=POSITIVE), None)
        if low >= high:
            check.fail(f"{key}.low", f"must be below high ({low} >= {high})")
        if log and low <= 0:
            check.fail(f"{key}.low", f"must be > 0 for a log range, got {low}")
        if log and step is not None:
            check.fail(f"{key}.step", "cannot be combined with log = true")
        return Range(low, high, log, step)
    return Fixed(check.value(raw, key, rule))


def parse_search(check: Checker, raw: Mapping[str, Any]) -> SearchSpace:
    """Reads ``[search]``; unknown axes, settings and entries fail with the allowed names."""
    entries = list(OPTIMIZERS) + list(SCHEDULES)
    # Unsearched axes keep TrainConfig's own defaults (one copy of them, in TrainConfig).
    axes = {a: Fixed(getattr(TrainConfig, a)) for a in AXES}
    shared: dict[str, Dim] = {}
    per_entry: dict[str, dict[str, Dim]] = {}
    for key, value in raw.items():
        path = f"search.{key}"
        if key in AXES:
            axes[key] = parse_dim(check, value, path, AXES[key], ranges=False)
        elif key in CONTROLS:
            axes[key] = parse_dim(check, value, path, CONTROLS[key],
                                  ranges=key == "label_smoothing")
            if key == "model":
                for name in (d.values if isinstance(d := axes[key], Choice) else (d.value,)):
                    problem = check_model_name(name)
                    if problem:
                        check.fail(path, f"unknown model {name!r}; allowed: {problem}")
        elif key in PARAMS:
            shared[key] = parse_dim(check, value, path, PARAMS[key])
        elif key in entries and isinstance(value, Mapping):
            allowed = entry_params(key)
            check.no_unknown(value, path, allowed)
            per_entry[key] = {p: parse_dim(check, v, f"{path}.{p}", PARAMS[p])
                              for p, v in value.items()}
        else:
            check.fail(path, "unknown key; allowed: " + ", ".join(
                [*AXES, *CONTROLS, *PARAMS, "[search.<optimizer or schedule name>]"]))
    return SearchSpace(axes, shared, per_entry)


def _suggest(trial: optuna.Trial, name: str, dim: Dim, kind: str) -> Any:
    if isinstance(dim, Fixed):
        return dim.value
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.values))
    if kind == "int":
        return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1),
                                 log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


def suggest_config(trial: optuna.Trial, space: SearchSpace, base: TrainConfig) -> TrainConfig:
    """Asks ``trial`` for every active dimension and returns the resolved config.

    Parameter names: the axes by their own name (``optimizer``), settings as
    ``<optimizer or schedule>.<setting>`` (``adamw.lr``, ``warmup_cosine.warmup_epochs``), so
    each family's settings are modelled separately by the sampler.
    """
    axes = {a: _suggest(trial, a, space.axes[a], AXES[a].kind) for a in AXES}
    controls = {a: _suggest(trial, a, space.axes[a], CONTROLS[a].kind)
                for a in CONTROLS if a in space.axes}
    model = base.model
    if "model" in controls:
        model = dataclasses.replace(model, name=controls.pop("model"))
    if "residual" in controls:
        model = dataclasses.replace(model, residual=controls.pop("residual"))

    def settings(entry: str) -> dict[str, Any]:
        return {p: _suggest(trial, f"{entry}.{p}", space.dim(entry, p), PARAMS[p].kind)
                for p in entry_params(entry)}

    opt = settings(axes["optimizer"])
    return dataclasses.replace(
        base, **axes, **controls, model=model, lr=opt.pop("lr"),
        weight_decay=opt.pop("weight_decay"), optimizer_params=opt,
        schedule_params=settings(axes["schedule"]),
    )


def _grid_values(dim: Dim, kind: str) -> list[Any] | None:
    if isinstance(dim, Choice):
        return list(dim.values)
    if isinstance(dim, Range) and dim.step is not None and not dim.log:
        values = np.arange(dim.low, dim.high + dim.step / 2, dim.step)
        return [int(v) if kind == "int" else float(v) for v in values]
    if isinstance(dim, Range):
        return None
    return []


def grid_space(check: Checker, space: SearchSpace) -> dict[str, list[Any]]:
    """Every trial parameter and its values, for the grid sampler; a range needs a step."""
    grid: dict[str, list[Any]] = {}
    for axis, dim in space.axes.items():
        grid[axis] = _grid_values(dim, {**AXES, **CONTROLS}[axis].kind) or []
    for entry in (*space.choices("optimizer"), *space.choices("schedule")):
        for p in entry_params(entry):
            values = _grid_values(space.dim(entry, p), PARAMS[p].kind)
            if values is None:
                check.fail(f"search.{p}", f"the grid sampler needs a choice list or a range "
                                          f"with step for {entry}.{p} (log ranges have none)")
            grid[f"{entry}.{p}"] = values
    return {k: v for k, v in grid.items() if v}
