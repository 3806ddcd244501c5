"""Every sampler and pruner of the spec works with the conditional search space."""

from __future__ import annotations

import optuna
import pytest

from hpo.study._samplers import PRUNERS, SAMPLERS, build_pruner, build_sampler
from hpo.study._space import suggest_config
from hpo.study._spec import parse_spec
from hpo.worker._worker import Budget

SEARCH = {
    "optimizer": ["sgd", "adamw"],
    "schedule": ["cosine", "warmup_cosine"],
    "init": ["kaiming_normal", "orthogonal"],
    "zero_init_residual": [True, False],
    "momentum": [0.8, 0.9],
    "warmup_epochs": {"low": 0.0, "high": 2.0, "step": 1.0},
    "adamw": {"lr": [1e-3, 3e-3], "weight_decay": [0.01, 0.1], "beta2": [0.99, 0.999]},
    "sgd": {"lr": {"low": 0.05, "high": 0.2, "step": 0.05}, "weight_decay": [1e-4, 5e-4]},
}


def _spec(sampler: str, pruner: str = "none", **pruner_options: object):
    raw = {"study": {"name": "s", "n_trials": 12}, "model": {"name": "resnet8"},
           "training": {"epochs": 4}, "sampler": {"name": sampler, "seed": 1},
           "pruner": {"name": pruner, **pruner_options}, "search": SEARCH}
    return parse_spec(raw, "test")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_explores_the_conditional_space(sampler: str) -> None:
    spec = _spec(sampler)
    study = optuna.create_study(
        direction="maximize",
        sampler=build_sampler(spec.sampler, spec.sampler_options, spec.seed, spec.grid),
    )
    configs = []

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, spec.space, spec.base)
        configs.append(config)
        return config.lr * (2 if config.init == "orthogonal" else 1)

    study.optimize(objective, n_trials=12)
    assert {c.optimizer for c in configs} == {"sgd", "adamw"}
    for c in configs:
        if c.optimizer == "sgd":
            assert c.optimizer_params == {"momentum": c.optimizer_params["momentum"]}
            assert c.optimizer_params["momentum"] in (0.8, 0.9)
        else:
            assert c.optimizer_params["beta2"] in (0.99, 0.999) and c.lr in (1e-3, 3e-3)
        if c.schedule == "warmup_cosine":
            assert c.schedule_params["warmup_epochs"] in (0.0, 1.0, 2.0)
    params = study.trials[0].params
    assert all(not k.startswith("sgd.") for k in params) or all(
        not k.startswith("adamw.") for k in params)  # only the chosen family's settings


def test_grid_sampler_covers_the_whole_grid() -> None:
    """Every searched dimension of SEARCH, each family's settings under its own name; fixed
    settings (adamw's beta1 and eps, the cosine floors, no_decay_bn_bias) are not in the grid."""
    grid = _spec("grid").grid
    assert grid.pop("sgd.lr") == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert grid == {
        "optimizer": ["sgd", "adamw"], "schedule": ["cosine", "warmup_cosine"],
        "init": ["kaiming_normal", "orthogonal"], "zero_init_residual": [True, False],
        "sgd.weight_decay": [1e-4, 5e-4], "sgd.momentum": [0.8, 0.9],
        "adamw.lr": [1e-3, 3e-3], "adamw.weight_decay": [0.01, 0.1],
        "adamw.beta2": [0.99, 0.999],
        "cosine.warmup_epochs": [0.0, 1.0, 2.0], "warmup_cosine.warmup_epochs": [0.0, 1.0, 2.0],
    }


# (pruner, options, {bad trial: step it is pruned at}). Trials 0-3 are good, 4-7 bad; the
# median and percentile pruners keep their 5 startup trials (0-4); patience 1 waits one step
# without improvement past the first comparison.
PRUNING = [
    ("none", {}, {}),
    ("median", {"n_warmup_steps": 1}, {5: 1, 6: 1, 7: 1}),
    ("percentile", {"percentile": 40.0}, {5: 1, 6: 1, 7: 1}),
    ("successive_halving", {"min_resource": 1}, {4: 1, 5: 1, 6: 1, 7: 1}),
    # Brackets are drawn from a hash of the study name and trial number (fixed name below):
    # trial 7 lands alone in a bracket with nothing to be compared with.
    ("hyperband", {"min_resource": 1}, {4: 1, 5: 1, 6: 1}),
    ("threshold", {"lower": 0.5}, {4: 1, 5: 1, 6: 1, 7: 1}),
    ("asha", {"min_resource": 1, "reduction_factor": 2, "brackets": False},
     {4: 1, 5: 1, 6: 1, 7: 1}),
    ("asha", {"rungs": [2, 3], "brackets": False}, {4: 2, 5: 2, 6: 2, 7: 2}),
    # with brackets (the default) the draw hashes the study name and trial number: trials 0,
    # 1, 3 and 4 share bracket 0, where 4 is cut at epoch 2; 5-7 draw the unjudged bracket
    ("asha", {"rungs": [2, 3]}, {4: 2}),
    ("median", {"patience": 1, "min_delta": 0.01}, {5: 3, 6: 3, 7: 3}),
]


@pytest.mark.parametrize("pruner,options,expected", PRUNING)
def test_every_pruner_prunes_the_bad_curves_and_keeps_the_good(pruner: str, options: dict,
                                                               expected: dict) -> None:
    spec = _spec("random", pruner, **options)
    study = optuna.create_study(direction="maximize", study_name="brackets-hash-this-name",
                                pruner=build_pruner(spec.pruner, spec.pruner_options),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    pruned_at = {}

    def objective(trial: optuna.Trial) -> float:
        good = trial.number < 4
        for step in range(1, 5):
            value = 0.9 if good else 0.1 - 0.01 * step
            trial.report(value, step)
            if trial.should_prune():
                pruned_at[trial.number] = step
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=8)
    assert pruned_at == expected
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials[:4])


def test_all_pruners_are_covered() -> None:
    assert set(PRUNERS) == {"none", "median", "percentile", "successive_halving", "hyperband",
                            "threshold", "asha"}


def test_patience_wraps_the_pruner() -> None:
    pruner = build_pruner("median", {"patience": 2})
    assert isinstance(pruner, optuna.pruners.PatientPruner)


def test_hyperband_max_resource_defaults_to_the_epochs() -> None:
    assert _spec("tpe", "hyperband").pruner_options["max_resource"] == 4


def test_budget_counts_finished_trials_over_all_workers() -> None:
    study = optuna.create_study()
    budget = Budget(3)
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], value=1.0 if state == "COMPLETE" else None))
    assert not budget.met(study)
    study.add_trial(optuna.trial.create_trial(value=2.0))
    assert budget.met(study)
