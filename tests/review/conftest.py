"""Fixtures of the review tests: one real finished study, replicated once, shared by the
modules that read it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here, write_spec

# Screenshots to look at, kept outside the working tree.
ARTIFACTS = Path(os.environ.get("HPO_TEST_ARTIFACTS", "/tmp/hpo-test-artifacts"))
ARTIFACTS.mkdir(parents=True, exist_ok=True)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--virtual-time-budget=8000"]
SCHEMA = json.loads((REPO / "hpo" / "review" / "report.schema.json").read_text())


@pytest.fixture(scope="package")
def finished(tmp_path_factory) -> Path:
    """A directory holding hpo.journal with a finished 8-trial study named 'tiny'."""
    d = tmp_path_factory.mktemp("study")
    spec = write_spec(d, n_trials=8, epochs=3)
    result = hpo_here("launch", str(spec), "--workers", "2", cwd=d)
    assert result.returncode == 0, result.stderr[-2000:]
    return d


@pytest.fixture(scope="package")
def replicated(finished: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the finished study's directory after ``hpo replicate tiny --top 2 --seeds 2``
    (a copy, so that the other tests read the study as its search left it)."""
    d = tmp_path_factory.mktemp("replicated") / "study"
    shutil.copytree(finished, d)
    return d, hpo_here("replicate", "tiny", "--top", "2", "--seeds", "2", cwd=d)


def study_in(d: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(str(d / "hpo.journal")))
