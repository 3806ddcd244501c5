"""Samplers and pruners: one table each maps a spec name to its options and its constructor.

The spec checks options against these tables at load time, including that the packages a
sampler needs import, since Optuna would otherwise fail only at the first sample after the
startup trials, hours into a study.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from hpo.checks import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    INCREASING_EPOCHS,
    NON_NEGATIVE,
    POSITIVE,
    Rule,
)
from hpo.study._promotion import AshaPruner

_INT0 = Rule("int", bound=NON_NEGATIVE)


@dataclass(frozen=True)
class Component:
    """A sampler or pruner: its options, the packages it imports and its constructor.

    ``shared_seed``: every process must use the same seed (the grid sampler's seed orders the
    grid, and processes that ordered it differently would map a grid point to different
    parameters); other samplers get a stream of their own per process.
    """

    options: Mapping[str, Rule]
    build: Callable[..., Any]
    requires: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    shared_seed: bool = False


def _grid(seed: int | None, search_space: Mapping[str, Sequence[Any]], **_: Any) -> Any:
    return optuna.samplers.GridSampler(dict(search_space), seed=seed)


SAMPLERS: dict[str, Component] = {
    "tpe": Component(
        {"n_startup_trials": _INT0, "multivariate": Rule("bool"), "group": Rule("bool"),
         "constant_liar": Rule("bool"), "n_ei_candidates": Rule("int", bound=AT_LEAST_ONE),
         "consider_endpoints": Rule("bool")},
        lambda seed, **o: optuna.samplers.TPESampler(seed=seed, **o),
        defaults={"multivariate": True, "constant_liar": True},
    ),
    "random": Component({}, lambda seed, **o: optuna.samplers.RandomSampler(seed=seed)),
    "gp": Component(
        {"n_startup_trials": _INT0, "deterministic_objective": Rule("bool")},
        lambda seed, **o: optuna.samplers.GPSampler(seed=seed, **o),
        requires=("scipy", "torch"),
    ),
    "cmaes": Component(
        {"n_startup_trials": _INT0, "sigma0": Rule("float", bound=POSITIVE),
         "popsize": Rule("int", bound=AT_LEAST_TWO), "with_margin": Rule("bool"),
         "use_separable_cma": Rule("bool")},
        lambda seed, **o: optuna.samplers.CmaEsSampler(seed=seed, **o),
        requires=("cmaes",),
    ),
    "qmc": Component(
        {"qmc_type": Rule("str", choices=("sobol", "halton")), "scramble": Rule("bool")},
        lambda seed, **o: optuna.samplers.QMCSampler(seed=seed, **o),
        requires=("scipy",),
    ),
    "grid": Component({}, _grid, shared_seed=True),
}

_WARMUP = {"n_warmup_steps": _INT0, "interval_steps": Rule("int", bound=AT_LEAST_ONE)}
_MEDIAN = {"n_startup_trials": _INT0, **_WARMUP, "n_min_trials": Rule("int", bound=AT_LEAST_ONE)}
_RUNGS = {"reduction_factor": Rule("int", bound=AT_LEAST_TWO),
          "bootstrap_count": _INT0, "min_resource": Rule("int", bound=AT_LEAST_ONE)}

PRUNERS: dict[str, Component] = {
    "none": Component({}, lambda **o: optuna.pruners.NopPruner()),
    "median": Component(_MEDIAN, lambda **o: optuna.pruners.MedianPruner(**o)),
    "percentile": Component(
        {"percentile": Rule("float", bound=(lambda v: 0 <= v <= 100, "in [0, 100]")), **_MEDIAN},
        lambda **o: optuna.pruners.PercentilePruner(**o),
        defaults={"percentile": 25.0},
    ),
    "successive_halving": Component(
        {**_RUNGS, "min_early_stopping_rate": _INT0},
        lambda **o: optuna.pruners.SuccessiveHalvingPruner(**o),
    ),
    # max_resource defaults to the study's epochs (set by the spec reader).
    "hyperband": Component(
        {**_RUNGS, "max_resource": Rule("int", bound=AT_LEAST_ONE)},
        lambda **o: optuna.pruners.HyperbandPruner(**o),
    ),
    # hpo's own: pauses instead of stopping, and promotes paused trials later (_promotion.py);
    # max_resource defaults to the study's epochs (set by the spec reader).
    "asha": Component(
        {"min_resource": Rule("int", bound=AT_LEAST_ONE),
         "reduction_factor": Rule("int", bound=AT_LEAST_TWO),
         "max_resource": Rule("int", bound=AT_LEAST_ONE), "promotion": Rule("bool"),
         "rungs": Rule("list", bound=INCREASING_EPOCHS), "brackets": Rule("bool")},
        lambda **o: AshaPruner(**o),
        defaults={"min_resource": 1, "reduction_factor": 3, "promotion": True,
                  "brackets": True},
    ),
    "threshold": Component(
        {"lower": Rule("float"), "upper": Rule("float"), **_WARMUP},
        lambda **o: optuna.pruners.ThresholdPruner(**o),
    ),
}

# Keys of [pruner] that wrap any pruner in Optuna's PatientPruner.
PATIENCE_OPTIONS = {"patience": _INT0, "min_delta": Rule("float", bound=NON_NEGATIVE)}


def missing_package(packages: Sequence[str]) -> str | None:
    """The first of ``packages`` that does not import, or None."""
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def build_sampler(
    name: str, options: Mapping[str, Any], seed: int | None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler ``name``; ``grid`` is the full search space that the grid sampler walks."""
    entry = SAMPLERS[name]
    kwargs = {**entry.defaults, **options}
    if name == "grid":
        kwargs["search_space"] = grid or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.build(seed=seed, **kwargs)


def build_pruner(name: str, options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner ``name``, wrapped in a PatientPruner when ``patience`` is among the options."""
    options = dict(options)
    patience = {k: options.pop(k) for k in PATIENCE_OPTIONS if k in options}
    pruner = PRUNERS[name].build(**{**PRUNERS[name].defaults, **options})
    if "patience" in patience:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(
                None if name == "none" else pruner, patience["patience"],
                patience.get("min_delta", 0.0),
            )
    return pruner
