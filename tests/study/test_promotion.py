"""The asha pruner: paused trials, promotions that resume from checkpoints, exactly once."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.pruners._successive_halving import _is_trial_promotable_to_next_rung
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import open_storage
from hpo.storage._lineage import continue_chain
from hpo.study._promotion import AshaPruner, in_top, promote_due, rung_epochs
from hpo.training import TrainConfig, load_data, train
from tests.conftest import fork_worker, hpo_here, write_spec

# One optimizer and schedule; only the learning rate is searched, so the test can enqueue a
# good, a middling and two hopeless rates and know how rung 1 ranks them.
SEARCH = """
optimizer = "sgd"
schedule = "cosine"
init = "kaiming_normal"
weight_decay = 5e-4
lr = {low = 1e-5, high = 0.5, log = true}
"""
ASHA = '[pruner]\nname = "asha"\nmin_resource = 1\nreduction_factor = 2\nbrackets = false\n'
# rung 1 of 4 trials: 0.05 first, 0.003 second, the two hopeless ones last; with 4 lineages
# there the top 2 go on, so trial 1 (paused when it ranked 2nd of 2) is promoted.
ENQUEUED = [0.05, 0.003, 1e-5, 2e-5]


def test_in_top_agrees_with_optunas_successive_halving_rule() -> None:
    rng = random.Random(0)
    for _ in range(500):
        others = [rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in range(rng.randint(0, 9))]
        value, eta = rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]), rng.randint(2, 4)
        for direction, sign in ((optuna.study.StudyDirection.MAXIMIZE, 1.0),
                                (optuna.study.StudyDirection.MINIMIZE, -1.0)):
            expected = _is_trial_promotable_to_next_rung(value, [*others, value], eta, direction)
            assert in_top(value, others, eta, sign) == expected


def test_rungs_are_min_resource_times_powers_of_eta_below_the_epochs() -> None:
    assert rung_epochs(1, 3, 12) == [1, 3, 9]
    assert rung_epochs(2, 2, 12) == [2, 4, 8]
    assert rung_epochs(1, 2, 1) == []


def _paused(study: optuna.Study, value: float, at: int = 1) -> None:
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params={"x": value},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        intermediate_values={e: value for e in range(1, at + 1)},
        user_attrs={record.PAUSED_AT: at}))


def test_a_paused_trial_is_promoted_once_the_rung_ranks_it_in_the_top() -> None:
    study = optuna.create_study(direction="maximize")
    pruner = AshaPruner(1, 2, 4)
    for v in (0.9, 0.5):  # 0.5 ranks 2nd of 2: one slot, paused
        _paused(study, v)
    study.trials  # noqa: B018
    assert promote_due(study, pruner) == 2  # 0.9 is the best of its rung: promoted first
    _paused(study, 0.3)
    assert promote_due(study, pruner) is None  # 0.5: 2nd of 3, one slot
    _paused(study, 0.1)
    number = promote_due(study, pruner)  # 2nd of 4: two slots
    trials = study.get_trials()
    assert trials[number].state == TrialState.WAITING
    assert trials[number].user_attrs[record.PROMOTED_FROM] == 1
    assert trials[number].system_attrs[record.RETRY_HISTORY] == [1]
    assert trials[number].intermediate_values == {1: 0.5}
    assert promote_due(study, pruner) is None  # never twice


def _asha_spec(tmp: Path, n_trials: int, epochs: int) -> Path:
    spec = write_spec(tmp, n_trials=n_trials, epochs=epochs, search=SEARCH)
    text = spec.read_text()
    start = text.index("[pruner]")
    spec.write_text(text[:start] + ASHA + text[text.index("[data]"):])
    return spec


def _create_with_queue(tmp: Path, url: str, spec: Path, name: str = "tiny") -> optuna.Study:
    result = hpo_here("create", str(spec), "--storage", url, "--study-name", name, cwd=tmp)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    for lr in ENQUEUED:
        study.enqueue_trial({"sgd.lr": lr})
    return study


def test_a_promoted_trial_resumes_and_ends_exactly_as_an_uninterrupted_run(tmp_path) -> None:
    url = str(tmp_path / "s.journal")
    # rungs: epoch 1 only, so a promoted trial trains on to the end
    study = _create_with_queue(tmp_path, url, _asha_spec(tmp_path, n_trials=6, epochs=2))
    result = hpo_here("worker", "--study", "tiny", "--storage", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert " paused, " in result.stderr.splitlines()[-1]  # the progress line says so
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials[1].state == TrialState.PRUNED and trials[1].user_attrs[record.PAUSED_AT] == 1
    (cont,) = [t for t in trials if t.user_attrs.get(record.PROMOTED_FROM) == 1]
    assert cont.number > 3 and cont.user_attrs[record.RESUMED_FROM_EPOCH] == 1
    assert cont.state == TrialState.COMPLETE
    final, lineage = cont, [trials[1], cont]
    config = TrainConfig.from_dict(final.user_attrs[record.CONFIG])
    reference = train(config, load_data(config.data))
    assert final.value == reference.history[-1].val_accuracy  # bit for bit on the CPU
    assert final.intermediate_values == {m.epoch: m.val_accuracy for m in reference.history}
    # the lineage is one configuration: counted once, each epoch once
    report = hpo_here("report", "tiny", "--storage", url, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    import json

    r = json.loads(report.stdout)
    numbers = [t["trial_number"] for t in r["top"]]
    assert 1 not in numbers and all(t.number not in numbers for t in lineage[:-1])
    trained = sum(int(t.user_attrs.get(record.EPOCHS_RUN, 0))
                  - int(t.user_attrs.get(record.RESUMED_FROM_EPOCH, 0)) for t in trials)
    assert sum(row["epochs"] for key, row in r["compute"].items() if key != "pruning") == trained
    assert r["compute"]["promoted"]["trials"] >= 1
    assert r["n_trials"]["complete"] + r["n_trials"]["pruned"] + r["n_trials"]["paused"] == 6


def _kill_during_promotion(tmp: Path, url: str, name: str) -> None:
    spec = _asha_spec(tmp, n_trials=5, epochs=6)
    text = spec.read_text().replace("[study]\n", "[study]\nheartbeat_interval = 1\n"
                                    "grace_period = 4\n")
    spec.write_text(text.replace('width = 4', 'width = 32'))  # ~1 s an epoch: time to kill
    study = _create_with_queue(tmp, url, spec, name)
    worker = fork_worker(tmp, url, name)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        running = study.get_trials(states=(TrialState.RUNNING,))
        if any(record.PROMOTED_FROM in t.user_attrs for t in running):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no promotion ran")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    again = hpo_here("worker", "--study", name, "--storage", url, "--checkpoint-dir",
                     str(tmp / "ckpt"), cwd=tmp)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    (killed,) = [t for t in trials if t.user_attrs.get(record.PROMOTED_FROM) == 1
                 and t.state == TrialState.FAIL]
    (retry,) = [t for t in trials if killed.number in record.retry_history(t)]
    assert retry.user_attrs[record.RESUMED_FROM_EPOCH] >= 1  # the paused epochs are kept
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not [t for t in trials if record.DUPLICATE_OF in t.user_attrs]


def test_a_worker_killed_during_a_promotion_loses_nothing_on_the_journal(tmp_path) -> None:
    _kill_during_promotion(tmp_path, str(tmp_path / "s.journal"), "tiny")


def test_a_worker_killed_during_a_promotion_loses_nothing_on_postgresql(
        tmp_path, pg_url, study_name) -> None:
    try:
        _kill_during_promotion(tmp_path, pg_url, study_name)
    finally:
        optuna.delete_study(study_name=study_name, storage=open_storage(pg_url))


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_two_workers_never_train_one_promotion_twice(tmp_path, pg_url, study_name,
                                                     backend: str) -> None:
    """Two workers that promote the same paused trial at the same moment both queue a
    continuation (the race, made certain here); exactly one of them trains."""
    url = str(tmp_path / "s.journal") if backend == "journal" else pg_url
    study = _create_with_queue(tmp_path, url, _asha_spec(tmp_path, n_trials=2, epochs=4),
                               study_name)
    try:
        first = hpo_here("worker", "--study", study_name, "--storage", url, cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        paused = study.get_trials()[1]
        assert paused.user_attrs[record.PAUSED_AT] == 1
        for _ in range(2):
            continue_chain(study._storage, study._study_id, paused,  # noqa: SLF001
                           {record.PROMOTED_FROM: 1}, promotion=True)
        both = hpo_here("worker", "--study", study_name, "--storage", url, "--workers", "2",
                        "--n-trials", "4", cwd=tmp_path)
        assert both.returncode == 0, both.stderr[-3000:]
        trials = study.get_trials()
        twins = [t for t in trials if t.user_attrs.get(record.PROMOTED_FROM) == 1]
        trained = [t for t in twins if record.DUPLICATE_OF not in t.user_attrs]
        assert len(twins) == 2 and len(trained) == 1
        (dup,) = [t for t in twins if record.DUPLICATE_OF in t.user_attrs]
        assert dup.user_attrs[record.DUPLICATE_OF] == trained[0].number < dup.number
        assert dup.user_attrs[record.EPOCHS_RUN] == 0 and dup.state == TrialState.FAIL
        assert trained[0].user_attrs[record.RESUMED_FROM_EPOCH] == 1
    finally:
        if backend == "postgresql":
            optuna.delete_study(study_name=study_name, storage=open_storage(pg_url))


def _finished(study: optuna.Study, bracket: int, curve: list[float]) -> None:
    """A configuration that trained to the end in ``bracket``, with its per-epoch values."""
    study.add_trial(optuna.trial.create_trial(
        value=curve[-1], params={"x": curve[-1]},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        intermediate_values=dict(enumerate(curve, start=1)), user_attrs={record.BRACKET: bracket}))


def test_bracket_odds_start_with_most_epochs_judged_and_follow_each_rungs_rank_consistency(
) -> None:
    pruner = AshaPruner(1, 3, 4, rungs=[1, 2], brackets=True)
    # bracket b's share of the epochs, 3**-b, over a configuration's expected epochs there
    # (bracket 0: 1 epoch, the best third 1 more, the best ninth 2 more; bracket 1: 2, then
    # the best third 2 more; bracket 2: all 4)
    prior = [1 / (1 + 1 / 3 + 2 / 9), 1 / 3 / (2 + 2 / 3), 1 / 9 / 4]
    assert pruner.bracket_odds([]) == pytest.approx(prior)
    study = optuna.create_study(direction="maximize", study_name="odds")
    # configurations of the unjudged bracket: epoch 1 ranks them backwards (tau -1, no trust),
    # epoch 2 as the end does (tau 1, full trust); five are not yet enough to replace the prior
    finals = [0.91, 0.93, 0.95, 0.97, 0.99, 0.98]
    for final in finals[:5]:
        _finished(study, 2, [1 - final, final, 0.5, final])
    assert pruner.bracket_odds(study.get_trials()) == pytest.approx(prior)
    _finished(study, 2, [1 - finals[5], finals[5], 0.5, finals[5]])
    assert pruner.bracket_odds(study.get_trials()) == pytest.approx([0.0, prior[1], prior[2]])
    # a lineage that faced a rung's cut (bracket 0 at epoch 1) does not count for that rung
    for final in (0.2, 0.3, 0.4):
        _finished(study, 0, [final, final, final, final])
    assert pruner.bracket_odds(study.get_trials())[0] == 0.0
    # so no new configuration is judged at epoch 1 any more, and each keeps its bracket
    drawn = []
    for _ in range(20):
        trial = study.ask()
        trial.report(0.5, 1)
        frozen = study._storage.get_trial(trial._trial_id)  # noqa: SLF001
        drawn.append(pruner.bracket(study, frozen))
        assert pruner.bracket(study, study._storage.get_trial(trial._trial_id)) == drawn[-1]  # noqa: SLF001
    assert 0 not in drawn and {1, 2} <= set(drawn)
    # in between, the odds fall in proportion: epoch 1 ranks six unjudged configurations with 5
    # of their 15 pairs reversed, Kendall's tau (10 - 5) / 15 = 1/3, trusted 2/3 (of tau 0.5)
    noisy = optuna.create_study(direction="maximize", study_name="noisy")
    for rank, final in zip([3, 1, 0, 2, 5, 4], [0.90, 0.91, 0.92, 0.93, 0.94, 0.95], strict=True):
        _finished(noisy, 1, [0.1 * rank, final, 0.5, final])
    assert pruner.bracket_odds(noisy.get_trials())[0] == pytest.approx(prior[0] * 2 / 3)
