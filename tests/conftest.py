"""Shared fixtures: tiny specs that train in seconds, real storages (journal file, PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("HPO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

TINY_SPEC = """
[study]
name = "tiny"
n_trials = {n_trials}

[sampler]
name = "{sampler}"
seed = 0

[pruner]
name = "median"
n_startup_trials = 2
n_warmup_steps = 1

[data]
name = "digits"
val_fraction = 0.2

[model]
name = "resnet8"
width = 4

[training]
epochs = {epochs}
batch_size = 128
seed = 0

[search]
{search}
"""

DEFAULT_SEARCH = """
optimizer = ["sgd", "adam", "rmsprop"]
schedule = ["cosine", "step"]
init = ["kaiming_normal", "xavier_uniform"]
"""


def write_spec(tmp: Path, *, n_trials: int = 4, epochs: int = 3, sampler: str = "tpe",
               search: str = DEFAULT_SEARCH, name: str = "tiny.toml") -> Path:
    path = tmp / name
    path.write_text(TINY_SPEC.format(n_trials=n_trials, epochs=epochs, sampler=sampler,
                                     search=search))
    return path


def run_hpo(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Runs the real ``hpo`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a GPU: skipped, with the reason, where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu_check.py runs them there)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test PostgreSQL database; skipping is not an option, so a missing server fails."""
    import sqlalchemy

    from hpo.storage._backends import driver_url

    engine = sqlalchemy.create_engine(driver_url(PG_URL))
    with engine.connect():
        pass
    engine.dispose()
    yield PG_URL


@pytest.fixture
def study_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
