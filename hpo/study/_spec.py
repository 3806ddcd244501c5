"""Study specs: one TOML file per study, checked completely before anything runs.

A spec is read once, from a file (``hpo launch``) or from the study's ``spec`` user attribute
(workers, review tools), through the same :func:`parse_spec`, so a study carries everything
needed to run and read it without the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpo import record
from hpo.checks import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_HALF_OPEN,
    UNIT_OPEN,
    Checker,
    Rule,
)
from hpo.errors import UserError
from hpo.storage._backends import find_study
from hpo.storage._lineage import Liveness
from hpo.study._compare import CompareSpec
from hpo.study._samplers import PATIENCE_OPTIONS, PRUNERS, SAMPLERS, missing_package
from hpo.study._space import (
    AXES,
    PARAMS,
    Choice,
    SearchSpace,
    entry_params,
    grid_space,
    parse_search,
)
from hpo.study._tracking import TrackSpec, parse_track
from hpo.training import (
    DATASETS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    check_model_name,
    model_entry,
)
from hpo.training._imported import is_import_path
from hpo.training._imported import problem as import_problem

METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}
SECTIONS = ("study", "sampler", "pruner", "data", "model", "training", "search", "compare",
            "track")
_DATA_RULES = {
    "name": Rule("str", choices=tuple(DATASETS)),
    "root": Rule("str"),
    "val_fraction": Rule("float", bound=UNIT_OPEN),
    "split_seed": Rule("int"),
    "crop_padding": Rule("int", bound=NON_NEGATIVE),
    "flip": Rule("bool"),
    "download": Rule("bool"),
    "loader": Rule("str", choices=("device", "dataloader")),
}
_TRAINING_RULES = {
    "epochs": Rule("int", bound=AT_LEAST_ONE),
    "batch_size": Rule("int", bound=AT_LEAST_ONE),
    "seed": Rule("int", bound=NON_NEGATIVE),
    "precision": Rule("str", choices=("auto", "fp32", "bf16")),
    "label_smoothing": Rule("float", bound=UNIT_HALF_OPEN),
    "compile": Rule("bool"),
    "diagnostics": Rule("bool"),
}


@dataclass(frozen=True)
class StudySpec:
    """A checked spec.

    Attributes:
        name: default study name.
        metric: ``val_accuracy`` or ``val_loss``; ``direction`` follows from it.
        n_trials: the study's budget: finished (complete + pruned) trials over all workers.
        sampler, sampler_options, seed: the sampler (seed offset per worker).
        pruner, pruner_options: the pruner; ``patience``/``min_delta`` wrap it.
        base: the fixed part of every trial's config (data, model, training).
        space: the searched part.
        grid: the grid sampler's search space (empty for other samplers).
        liveness: heartbeat interval, grace period and retry limit (RDB storages), stall
            timeout (every storage).
        keep_checkpoints: how many of the best complete trials keep their final checkpoint.
        repeats: train a sampled configuration again when a finished trial already has exactly
            its parameters (default False: the trial reuses that result, ``duplicate_of``).
        warm_start: earlier studies (same storage) whose finished trials seed the sampler.
        compare: the head-to-head protocol (``[compare]``), or None for an ordinary study.
        track: the experiment trackers its trials are copied to (``[track]``).
        raw: the spec as written, stored in the study.
        source: where it was read from, for messages.
    """

    name: str
    metric: str
    direction: str
    n_trials: int
    sampler: str
    sampler_options: Mapping[str, Any]
    seed: int | None
    pruner: str
    pruner_options: Mapping[str, Any]
    base: TrainConfig
    space: SearchSpace
    liveness: Liveness
    keep_checkpoints: int
    repeats: bool
    raw: Mapping[str, Any]
    warm_start: tuple[str, ...]
    source: str
    grid: Mapping[str, list[Any]] = field(default_factory=dict)
    compare: CompareSpec | None = None
    track: TrackSpec = field(default_factory=TrackSpec)


def load_spec(path: str | Path) -> StudySpec:
    """Reads and checks the spec file at ``path``; every problem is a one-line UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such spec file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text file (byte {e.start} is not UTF-8); a spec is a "
                        "TOML file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the spec: {e.strerror or e}") from None
    if not text.strip():
        raise UserError(f"{path}: empty spec; it needs at least [study] with name and n_trials")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: TOML syntax error: {e}") from None
    return parse_spec(raw, str(path))


def load_spec_from_study(
    storage: optuna.storages.BaseStorage, storage_url: str, study_name: str
) -> tuple[optuna.Study, StudySpec]:
    """The study and the spec stored in it; unknown studies and studies that hpo did not
    create fail clearly (the review commands, which read any Optuna study, use
    :func:`hpo.storage._backends.find_study` instead)."""
    study = find_study(storage, storage_url, study_name)
    raw = study.user_attrs.get(record.SPEC)
    if not isinstance(raw, dict):
        raise UserError(f"study {study_name!r} has no hpo spec (user attribute 'spec'); "
                        "it was not created by hpo (create it with 'hpo create SPEC')")
    return study, parse_spec(raw, f"study {study_name!r}")


def parse_spec(raw: Mapping[str, Any], source: str) -> StudySpec:
    """Checks a parsed spec; ``source`` names it in messages (a file or a study)."""
    c = Checker(source)
    c.no_unknown(raw, "", SECTIONS)
    study = c.table(raw, "study", "", ("name", "metric", "direction", "n_trials",
                                       "heartbeat_interval", "grace_period", "max_retry",
                                       "stall_timeout", "keep_checkpoints", "repeats",
                                       "warm_start"))
    if not study:
        c.fail("study", "section [study] is required (name, n_trials)")
    name = c.require(study, "study", "name", Rule("str"))
    if not name.strip():
        c.fail("study.name", "must not be empty")
    metric = c.get(study, "study", "metric", Rule("str", choices=tuple(METRICS)), "val_accuracy")
    direction = c.get(study, "study", "direction",
                      Rule("str", choices=("maximize", "minimize")), METRICS[metric])
    if direction != METRICS[metric]:
        c.fail("study.direction", f"{metric} is always {METRICS[metric]}d; remove the key "
                                  f"or set it to {METRICS[metric]!r}")
    n_trials = c.get(study, "study", "n_trials", Rule("int", bound=AT_LEAST_ONE), None)
    liveness = _liveness(c, study)
    keep_checkpoints = c.get(study, "study", "keep_checkpoints", Rule("int", bound=NON_NEGATIVE),
                             3)
    repeats = c.get(study, "study", "repeats", Rule("bool"), False)
    warm = study.get("warm_start", [])
    if not isinstance(warm, list) or not all(isinstance(w, str) and w.strip() for w in warm):
        c.fail("study.warm_start", f"must be a list of study names, got {warm!r}")
    if name in warm:
        c.fail("study.warm_start", f"names this study itself ({name!r}); name earlier studies")

    data = _data(c, c.table(raw, "data", "", None))
    model = _model(c, c.table(raw, "model", "", None), "model")
    training = c.options(c.table(raw, "training", "", None), "training", _TRAINING_RULES)
    base = TrainConfig(data=data, model=model, **training)
    space = parse_search(c, c.table(raw, "search", "", None))
    compare = _compare(c, c.table(raw, "compare", "", ("axis", "budget", "seeds")), space)
    n_trials = _budget(c, n_trials, compare)
    track = parse_track(c, c.table(raw, "track", "", ("mlflow", "mlflow_uri", "mlflow_experiment",
                                                      "tensorboard", "tensorboard_dir")))

    sampler_t = c.table(raw, "sampler", "", None)
    sampler = c.get(sampler_t, "sampler", "name", Rule("str", choices=tuple(SAMPLERS)), "tpe")
    seed = c.get(sampler_t, "sampler", "seed", Rule("int", bound=NON_NEGATIVE), None)
    sampler_options = c.options(
        {k: v for k, v in sampler_t.items() if k not in ("name", "seed")}, "sampler",
        SAMPLERS[sampler].options,
    )
    missing = missing_package(SAMPLERS[sampler].requires)
    if missing:
        c.fail("sampler.name", f"{sampler!r} needs the Python package {missing!r}, which does "
                               "not import; install it or choose another sampler")
    grid = grid_space(c, space) if sampler == "grid" else {}
    if compare is not None and sampler == "grid":
        c.fail("sampler.name", "a [compare] study gives every level the same budget of sampled "
                               "trials; the grid sampler walks one grid for all; choose another")

    pruner_t = c.table(raw, "pruner", "", None)
    pruner = c.get(pruner_t, "pruner", "name", Rule("str", choices=tuple(PRUNERS)), "median")
    pruner_options = c.options(
        {k: v for k, v in pruner_t.items() if k != "name"}, "pruner",
        {**PRUNERS[pruner].options, **PATIENCE_OPTIONS},
    )
    if "min_delta" in pruner_options and "patience" not in pruner_options:
        c.fail("pruner.min_delta", "only applies with pruner.patience; set patience too")
    if pruner == "threshold" and not {"lower", "upper"} & set(pruner_options):
        c.fail("pruner", "the threshold pruner needs lower, upper or both")
    if pruner in ("hyperband", "asha"):
        pruner_options.setdefault("max_resource", base.epochs)

    return StudySpec(
        name=name, metric=metric, direction=direction, n_trials=n_trials,
        sampler=sampler, sampler_options=sampler_options, seed=seed,
        pruner=pruner, pruner_options=pruner_options,
        base=base, space=space, liveness=liveness, keep_checkpoints=keep_checkpoints,
        repeats=repeats, warm_start=tuple(warm),
        raw=dict(raw), source=source, grid=grid, compare=compare, track=track,
    )


def _liveness(c: Checker, study: dict[str, Any]) -> Liveness:
    """Heartbeat interval, grace period, retries and the stall timeout from ``[study]``."""
    defaults = Liveness()
    liveness = Liveness(
        c.get(study, "study", "heartbeat_interval", Rule("int", bound=AT_LEAST_ONE),
              defaults.heartbeat_interval),
        c.get(study, "study", "grace_period", Rule("int", bound=AT_LEAST_ONE),
              defaults.grace_period),
        c.get(study, "study", "max_retry", Rule("int", bound=NON_NEGATIVE), defaults.max_retry),
        c.get(study, "study", "stall_timeout", Rule("float", bound=POSITIVE), None),
    )
    if liveness.grace_period <= liveness.heartbeat_interval:
        c.fail("study.grace_period", f"must exceed heartbeat_interval "
                                     f"({liveness.heartbeat_interval} s); 3x is usual")
    return liveness


def _budget(c: Checker, n_trials: int | None, compare: CompareSpec | None) -> int:
    """``study.n_trials``, or a head-to-head study's budget x levels (which it must match)."""
    if compare is None:
        if n_trials is None:
            c.fail("study.n_trials", "is required (an integer: the trials to run; a [compare] "
                                     "study gives a budget per level instead)")
        return n_trials  # type: ignore[return-value]
    if n_trials is not None and n_trials != compare.n_trials:
        c.fail("study.n_trials", f"is {n_trials}, but [compare] gives {compare.budget} "
                                 f"trials to each of {len(compare.levels)} levels "
                                 f"({compare.n_trials}); remove n_trials")
    return compare.n_trials


def _compare(c: Checker, table: dict[str, Any], space: SearchSpace) -> CompareSpec | None:
    """``[compare]``: the axis must be a choice of two or more levels in ``[search]``."""
    if not table:
        return None
    choices = [a for a, d in space.axes.items() if isinstance(d, Choice) and len(d.values) > 1]
    axis = c.require(table, "compare", "axis", Rule("str"))
    if axis not in choices:
        allowed = ", ".join(choices) or "none (list two or more levels of an axis in [search])"
        c.fail("compare.axis", f"{axis!r} is not a choice of two or more levels in [search]; "
                               f"allowed: {allowed}")
    budget = c.require(table, "compare", "budget", Rule("int", bound=AT_LEAST_ONE))
    seeds = c.get(table, "compare", "seeds", Rule("int", bound=AT_LEAST_TWO), 3)
    return CompareSpec(axis, tuple(space.axes[axis].values), budget, seeds)  # type: ignore


def _model(c: Checker, table: dict[str, Any], path: str) -> ModelConfig:
    c.no_unknown(table, path, [f.name for f in dataclasses.fields(ModelConfig)])
    name = c.get(table, path, "name", Rule("str"), "resnet20")
    if is_import_path(name):
        unusable = import_problem(name)
        if unusable:
            c.fail(f"{path}.name", unusable)
    elif check_model_name(name):
        c.fail(f"{path}.name", f"unknown model {name!r}; allowed: {check_model_name(name)}")
    options = table.get("options", {})
    if not isinstance(options, dict):
        c.fail(f"{path}.options", f"must be a table of the factory's keyword arguments, got "
                                  f"{options!r}")
    if options and not is_import_path(name):
        c.fail(f"{path}.options", f"only for a model given by import path; {name} takes none")
    defaults = ModelConfig()
    if not model_entry(name).cifar_options:  # a setting the network ignores means nothing
        for key in ("shortcut", "width", "residual", "norm"):
            if key in table and table[key] != getattr(defaults, key):
                c.fail(f"{path}.{key}", f"{name} has no {key} setting; only the CIFAR "
                                        "ResNets (resnet8, resnet20, ... any 6n+2) have one")
    return ModelConfig(
        name,
        c.get(table, path, "shortcut", Rule("str", choices=("A", "B")), defaults.shortcut),
        c.get(table, path, "width", Rule("int", bound=AT_LEAST_ONE), defaults.width),
        c.get(table, path, "residual", Rule("bool"), defaults.residual),
        c.get(table, path, "norm", Rule("str", choices=("batch", "none")), defaults.norm),
        options,
    )


def _data(c: Checker, table: dict[str, Any], path: str = "data") -> DataConfig:
    name = c.get(table, path, "name", Rule("str"), "digits")
    common = {k: c.value(v, f"{path}.{k}", _DATA_RULES[k])
              for k, v in table.items() if k in _DATA_RULES and k != "name"}
    if is_import_path(name):  # a user's loader: its other keys are its keyword arguments
        unusable = import_problem(name)
        if unusable:
            c.fail(f"{path}.name", unusable)
        options = {k: v for k, v in table.items() if k not in _DATA_RULES}
        return DataConfig(**common, name=name, options=options)
    if name not in DATASETS:
        c.fail(f"{path}.name", f"unknown value {name!r}; allowed: {', '.join(DATASETS)}, or "
                               "'package.module:function' (your own loader)")
    extra = DATASETS[name].options  # keys only this dataset understands
    c.no_unknown(table, path, [*_DATA_RULES, *extra])
    options = {k: c.value(v, f"{path}.{k}", extra[k]) for k, v in table.items() if k in extra}
    return DataConfig(**common, name=name, options=options)


def check_config(raw: Mapping[str, Any], source: str) -> TrainConfig:
    """A resolved config (an export's ``config``) checked by the rules a spec obeys.

    Every name, type and range is checked, so an edited export fails here with one line
    naming the file and the key, not deep inside torch.
    """
    c = Checker(source)
    if not isinstance(raw, Mapping):
        c.fail("config", "must be a mapping of the training settings")
    c.no_unknown(raw, "config", [f.name for f in dataclasses.fields(TrainConfig)])
    data_t = c.table(raw, "data", "config", None)
    options = data_t.pop("options", None) or {}
    if not isinstance(options, Mapping):
        c.fail("config.data.options", f"must be a mapping, got {options!r}")
    data_t = {k: v for k, v in {**data_t, **options}.items() if v is not None}
    data = _data(c, data_t, "config.data")
    model = _model(c, c.table(raw, "model", "config", None), "config.model")
    checked: dict[str, Any] = {}
    for axis, rule in AXES.items():
        checked[axis] = c.get(raw, "config", axis, rule, getattr(TrainConfig, axis))
    for key in ("lr", "weight_decay"):
        checked[key] = c.get(raw, "config", key, PARAMS[key], getattr(TrainConfig, key))
    for entry, key in ((checked["optimizer"], "optimizer_params"),
                       (checked["schedule"], "schedule_params")):
        table = c.table(raw, key, "config", [p for p in entry_params(entry)
                                             if p not in ("lr", "weight_decay")])
        checked[key] = {p: c.value(v, f"config.{key}.{p}", PARAMS[p]) for p, v in table.items()}
    training = {k: v for k, v in raw.items() if k in _TRAINING_RULES}
    checked.update(c.options(training, "config", _TRAINING_RULES))
    return TrainConfig(data=data, model=model, **checked)
