"""The search benchmark's smoke run: every method, hpo's and the peers', one seed, a tiny
budget, so that no driver rots. Needs the bench extra's environment (``HPO_VENV=.venv-bench
HPO_EXTRAS=dev,bench bash scripts/setup.sh``); CI runs it there in a step of its own
(``.venv-bench/bin/python -m pytest -m bench``), outside the README's test command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.bench


def test_every_method_trains_through_hpos_objective_and_the_summary_names_the_best_peer(
        tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/bench_search.py", "--problems", "quickstart", "--methods",
         "all", "--seeds", "1", "--first-seed", "0", "--max-epochs", "3", "--jobs", "2",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_search import METHODS

    runs = json.loads((tmp_path / "runs.json").read_text())
    assert sorted(r["method"] for r in runs) == sorted(METHODS)
    for run in runs:  # each trained, and its anytime curve only climbs within the budget
        epochs = [e for e, _ in run["anytime"]]
        values = [v for _, v in run["anytime"]]
        assert run["trials"] >= 1 and epochs and values == sorted(values), run
        assert epochs == sorted(epochs) and epochs[-1] <= 3 + 12, run
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("seeds=1 first_seed=0 ratio_vs_best_peer quickstart=")
    assert "ratio_vs_optuna_defaults quickstart=" in last
    assert (tmp_path / "anytime-quickstart.png").stat().st_size > 10_000
