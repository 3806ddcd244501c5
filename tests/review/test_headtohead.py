"""The head-to-head statistics against references we did not write, and the verdicts."""

from __future__ import annotations

import itertools
import random
import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import record
from hpo.review._headtohead import budgets, expected_best, holm
from hpo.review._report import build_report
from hpo.study._compare import LevelSampler


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_expected_best_equals_the_mean_over_every_draw(sign: float) -> None:
    """Dodge et al.'s closed form against brute force: every ordered draw of n values with
    replacement, equally likely; the best of each (the max, or the min when lower is better)."""
    rng = random.Random(3)
    values = [round(rng.uniform(0.5, 0.9), 3) for _ in range(5)] + [0.7, 0.7]  # ties too
    for n in range(1, 5):
        bests = [max(d) if sign > 0 else min(d) for d in itertools.product(values, repeat=n)]
        mean, std = expected_best(values, n, sign)
        assert mean == pytest.approx(statistics.fmean(bests), abs=1e-12)
        assert std == pytest.approx(statistics.pstdev(bests), abs=1e-9)


def test_budgets_double_up_to_the_budget() -> None:
    assert budgets(1) == [1]
    assert budgets(8) == [1, 2, 4, 8]
    assert budgets(24) == [1, 2, 4, 8, 16, 24]


def test_holm_matches_the_worked_example() -> None:
    """Wikipedia, "Holm-Bonferroni method", Example: four hypotheses with p = 0.01, 0.04, 0.03
    and 0.005 at alpha = 0.05; H4 and H1 are rejected, H3 and H2 are not. Adjusted p-values by
    the step-down formula: 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, max(0.03, 2 x 0.03) = 0.06,
    max(0.06, 1 x 0.04) = 0.06."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]


def _trial(optimizer: str, value: float | None, state: TrialState = TrialState.COMPLETE):
    config = {"optimizer": optimizer, "schedule": "cosine", "init": "kaiming_normal",
              "lr": 0.1, "weight_decay": 1e-4}
    return create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"optimizer": optimizer, f"{optimizer}.lr": 0.1},
        distributions={"optimizer": CategoricalDistribution(["sgd", "rmsprop"]),
                       f"{optimizer}.lr": FloatDistribution(1e-4, 1.0, log=True)},
        intermediate_values={1: value if value is not None else 0.1},
        user_attrs={record.CONFIG: config, record.EPOCHS_RUN: 1})


def test_an_ordinary_study_with_very_unequal_levels_says_it_is_not_fair() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trials([_trial("rmsprop", 0.5 + i / 100) for i in range(13)]
                     + [_trial("sgd", None, TrialState.PRUNED) for _ in range(10)])
    verdict = build_report(study, "memory")["verdict"]
    assert "Not a fair comparison (optimizer: rmsprop 13 complete, sgd 0)" in verdict
    assert '[compare] axis = "optimizer"' in verdict
    even = optuna.create_study(direction="maximize")
    even.add_trials([_trial("rmsprop", 0.5 + i / 100) for i in range(5)]
                    + [_trial("sgd", 0.4 + i / 100) for i in range(4)])
    assert "Not a fair comparison" not in build_report(even, "memory")["verdict"]


def test_a_level_sampler_never_sees_another_levels_trials() -> None:
    """The proposal for an sgd slot is the same whether or not the study also holds many adam
    trials: each level's TPE reads only its own level's history."""
    dist = {"optimizer": CategoricalDistribution(["sgd", "adam"]),
            "x": FloatDistribution(0.0, 1.0)}

    def done(optimizer: str, x: float, value: float):
        return create_trial(state=TrialState.COMPLETE, value=value,
                            params={"optimizer": optimizer, "x": x}, distributions=dist)

    def proposal(extra: list) -> float:
        sampler = LevelSampler({level: optuna.samplers.TPESampler(seed=7, n_startup_trials=3)
                                for level in ("sgd", "adam")}, "optimizer")
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.add_trials([done("sgd", x, 1 - abs(x - 0.2)) for x in (0.1, 0.3, 0.5, 0.9)]
                         + extra)
        study.enqueue_trial({"optimizer": "sgd"})
        trial = study.ask()
        trial.suggest_categorical("optimizer", ["sgd", "adam"])
        return trial.suggest_float("x", 0.0, 1.0)

    alone = proposal([])
    crowded = proposal([done("adam", x / 20, 5.0 + x) for x in range(20)])
    assert alone == crowded
