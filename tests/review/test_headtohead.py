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
from hpo.review._report import build_report
from hpo.review._stats import budgets, expected_best, holm
from hpo.study._compare import LevelPruner, LevelSampler


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


def _slot(level: str, value: float, **attrs: object):
    return create_trial(
        state=TrialState.COMPLETE, value=value, params={"optimizer": level},
        distributions={"optimizer": CategoricalDistribution(["a", "b"])},
        intermediate_values={1: value},
        user_attrs={record.CONFIG: {"optimizer": level}, record.EPOCHS_RUN: 1, **attrs})


def test_the_head_to_head_verdict_ranks_finalists_and_says_when_the_budget_decides() -> None:
    """Level a: one excellent trial among poor ones; level b: uniformly fair. By Dodge's
    estimator b is expected to lead with 1 or 2 trials (0.6 against 0.3 and 0.45) and a with 4
    (0.9 x (1 - 0.75^4) + 0.1 x 0.75^4 = 0.65); a's finalists beat b's clearly."""
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(record.SPEC, {"compare": {"axis": "optimizer", "budget": 4, "seeds": 3},
                                      "search": {"optimizer": ["a", "b"]}})
    study.add_trials([_slot("a", v) for v in (0.9, 0.1, 0.1, 0.1)]
                     + [_slot("b", 0.6) for _ in range(4)])
    tests = {0: (0.95, 0.96, 0.94), 4: (0.61, 0.60, 0.62)}
    study.add_trials([_slot("a" if n == 0 else "b", t, **{
        record.REPLICATE_OF: n, record.REPLICATE_SEED: 1000 + i, record.TEST_ACCURACY: t})
        for n, values in tests.items() for i, t in enumerate(values)])
    report = build_report(study, "memory")
    h2h = report["head_to_head"]
    assert h2h["state"] == "done" and h2h["ranking"] == ["a", "b"]
    assert h2h["ranking_by_n"] == {"1": ["b", "a"], "2": ["b", "a"], "4": ["a", "b"]}
    assert [round(x["mean"], 4) for x in h2h["levels"][0]["expected_best"]] == \
        [0.3, 0.45, round(0.9 * (1 - 0.75 ** 4) + 0.1 * 0.75 ** 4, 4)]
    (pair,) = h2h["pairs"]
    assert pair["diff"] == pytest.approx(0.34) and pair["significant"]
    assert report["verdict"].startswith(
        "Head-to-head on optimizer, 4 trials per level, best of each retrained with 3 seeds "
        "(test accuracy): a 0.9500 +/- 0.0248, b 0.6100 +/- 0.0248. a beats b by 0.3400 (95 % CI")
    assert "significant after Holm's correction for 1 pair(s)" in report["verdict"]
    assert report["verdict"].endswith("The leader depends on the budget (expected best "
                                      "validation value, Dodge et al.): b at 1-2, a at 4 "
                                      "trials per level.")


def test_a_level_pruner_judges_a_trial_against_its_own_level_only() -> None:
    """Median pruning per level: 0.5 at epoch 1 is below every sgd trial (pruned) but above
    every adam trial (kept); one median pruner over the whole study would prune both."""
    def reported(level: str, value: float):
        return create_trial(state=TrialState.COMPLETE, value=value,
                            params={"optimizer": level},
                            distributions={"optimizer": CategoricalDistribution(["sgd", "adam"])},
                            intermediate_values={1: value})

    pruner = LevelPruner(optuna.pruners.MedianPruner(n_startup_trials=1), "optimizer")
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trials([reported("sgd", 0.9) for _ in range(3)]
                     + [reported("adam", 0.2) for _ in range(2)])
    verdicts = {}
    for level in ("sgd", "adam"):
        study.enqueue_trial({"optimizer": level})
        trial = study.ask()
        trial.suggest_categorical("optimizer", ["sgd", "adam"])
        trial.report(0.5, 1)
        verdicts[level] = trial.should_prune()
        study.tell(trial, 0.5)
    assert verdicts == {"sgd": True, "adam": False}
    whole = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    whole.add_trials(study.trials[:5])
    trial = whole.ask()
    trial.report(0.5, 1)
    assert trial.should_prune()
