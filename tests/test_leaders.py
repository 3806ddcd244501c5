"""One definition of "the leaders" (record.leaders), and the two bugs three definitions made."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import record
from hpo.storage._backends import open_storage
from hpo.study._replicate import enqueue_replicates
from hpo.training import TrainConfig
from tests.conftest import hpo_here

DIST = {"adam.lr": FloatDistribution(1e-5, 1e-1, log=True)}


def _trial(lr: float, value: float | None, state: TrialState = TrialState.COMPLETE,
           **attrs: object) -> optuna.trial.FrozenTrial:
    config = TrainConfig(optimizer="adam", lr=lr, epochs=2).to_dict()
    return create_trial(state=state, value=value, params={"adam.lr": lr}, distributions=DIST,
                        intermediate_values={1: value if value is not None else 0.5},
                        user_attrs={record.CONFIG: config, **attrs})


def _study(tmp: Path, trials: list) -> tuple[str, optuna.Study]:
    url = str(tmp / "s.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(url),
                                direction="maximize")
    study.add_trials(trials)
    return url, study


def test_replicate_never_picks_a_configuration_and_its_own_duplicate(tmp_path) -> None:
    _, study = _study(tmp_path, [
        _trial(1e-3, 0.9), _trial(1e-3, 0.9, **{record.DUPLICATE_OF: 0}), _trial(2e-3, 0.8)])
    enqueue_replicates(study, top=2, seeds=1, base_seed=0)
    replicated = {t.user_attrs[record.REPLICATE_OF] for t in study.trials
                  if record.is_replicate(t)}
    assert replicated == {0, 2}  # before: {0, 1}, one configuration twice


def test_export_never_writes_a_pruned_trial_as_a_result(tmp_path) -> None:
    url, _ = _study(tmp_path, [
        _trial(1e-3, 0.9), _trial(2e-3, None, TrialState.PRUNED),
        _trial(3e-3, None, TrialState.PRUNED)])
    out = tmp_path / "exports"
    result = hpo_here("export", "s", "--top", "3", "--storage", url, "--out", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["s-trial0.yaml"]  # before: three files
    assert "only 1 complete trial(s)" in result.stderr


def test_the_leaders_leave_out_duplicates_replicates_and_continued_pauses(tmp_path) -> None:
    _, study = _study(tmp_path, [
        _trial(1e-3, 0.8),
        _trial(1e-3, 0.8, **{record.DUPLICATE_OF: 0}),
        _trial(2e-3, 0.95, **{record.REPLICATE_OF: 0, record.REPLICATE_SEED: 1000}),
        _trial(3e-3, None, TrialState.PRUNED, **{record.PAUSED_AT: 1}),
        _trial(4e-3, None, TrialState.PRUNED, **{record.PAUSED_AT: 1}),
    ])
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.85, params={"adam.lr": 4e-3}, distributions=DIST,
        intermediate_values={1: 0.5, 2: 0.85},
        user_attrs={record.PROMOTED_FROM: 4},
        system_attrs={record.RETRY_HISTORY: [4], record.FAILED_TRIAL: 4}))
    assert [t.number for t in record.leaders(study)] == [5, 0]
    assert [t.number for t in record.leaders(study, pruned=True)] == [5, 0, 3]
