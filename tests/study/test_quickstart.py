"""The README's main job, run for real: studies/quickstart.toml with two workers (the
command's own code in this process; tests/test_cli.py runs the command in a process of its own)."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here


def test_quickstart_meets_its_promises(tmp_path: Path) -> None:
    storage = str(tmp_path / "quickstart.journal")
    result = hpo_here("launch", str(REPO / "studies" / "quickstart.toml"), "--workers", "2",
                      "--storage", storage, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    study = optuna.load_study(study_name="quickstart", storage=open_storage(storage))
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    assert len(finished) >= 30
    assert len(pruned) >= len(finished) / 4
    assert len({t.user_attrs["config"]["optimizer"] for t in finished}) >= 3
    assert study.best_value >= 0.97
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert "Top 5 of study 'quickstart'" in result.stdout
    assert f"{study.best_value:.4f}" in result.stdout
