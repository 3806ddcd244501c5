"""The objective's handling of device out-of-memory, exercised on the CPU."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import hpo.study._objective as objective_module
from hpo.storage._lineage import Liveness
from hpo.study._objective import Objective
from hpo.study._spec import load_spec
from hpo.worker._launch import create_or_resume
from tests.conftest import write_spec


def test_out_of_memory_requeues_the_trial_and_stops_the_worker(tmp_path: Path,
                                                               monkeypatch) -> None:
    spec = load_spec(write_spec(tmp_path, n_trials=3, epochs=1))
    url = str(tmp_path / "s.journal")
    study = create_or_resume(spec, url, "tiny")

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(objective_module, "train", no_memory)
    objective = Objective(spec, torch.device("cpu"), liveness=Liveness(max_retry=2))
    study.optimize(objective, n_trials=3, catch=(Exception,))

    trials = study.get_trials()
    assert objective.out_of_memory
    assert trials[0].state == TrialState.FAIL and len(trials) == 2  # the study stopped at once
    assert trials[0].user_attrs["stop_reason"].startswith("out of memory on cpu; queued")
    retry = trials[1]
    assert retry.state == TrialState.WAITING and retry.params == trials[0].params
    assert retry.system_attrs["failed_trial"] == 0


def test_the_retry_runs_and_completes_once_memory_allows(tmp_path: Path, monkeypatch) -> None:
    spec = load_spec(write_spec(tmp_path, n_trials=1, epochs=1))
    study = create_or_resume(spec, str(tmp_path / "s.journal"), "tiny")
    real_train = objective_module.train
    calls = {"n": 0}

    def once_out_of_memory(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train", once_out_of_memory)
    study.optimize(Objective(spec, torch.device("cpu")), n_trials=1, catch=(Exception,))
    study.optimize(Objective(spec, torch.device("cpu")), n_trials=1, catch=(Exception,))
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]  # the queued retry ran second
    assert optuna.trial.TrialState.WAITING not in states


@pytest.mark.parametrize("total,peak,expected", [
    (80 << 30, 2 << 30, 16),   # small model on an 80 GB card: capped at 16
    (80 << 30, 20 << 30, 3),   # 20 GB each + context: 3 fit with 10 % headroom
    (16 << 30, 15 << 30, 1),   # never fewer than one
])
def test_auto_packing_arithmetic(total: int, peak: int, expected: int) -> None:
    from hpo.worker._packing import trials_that_fit

    assert trials_that_fit(total, peak) == expected


def test_a_result_written_after_the_trial_was_retried_is_dropped_in_one_line(
        tmp_path: Path, monkeypatch, capfd, caplog) -> None:
    """The trainer finishes, but meanwhile another worker declared the trial stale and retried
    it: this worker's writes must stop with one line, no UpdateFinishedTrialError traceback."""
    from hpo.storage._backends import open_storage
    from hpo.storage._lineage import requeue
    from hpo.worker._plan import WorkerPlan
    from hpo.worker._worker import run_worker

    spec = load_spec(write_spec(tmp_path, n_trials=1, epochs=1))
    url = str(tmp_path / "s.journal")
    create_or_resume(spec, url, "tiny")
    real_train = objective_module.train
    calls = {"n": 0}

    def train_then_lose_the_trial(*args, **kwargs):
        result = real_train(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # what another worker's stale check does meanwhile
            other = optuna.load_study(study_name="tiny", storage=open_storage(url))
            (running,) = other.get_trials(states=(TrialState.RUNNING,))
            requeue(other, running.number, Liveness())
        return result

    monkeypatch.setattr(objective_module, "train", train_then_lose_the_trial)
    assert run_worker(WorkerPlan(url, "tiny", str(tmp_path / "ckpt"))) == 0
    err = capfd.readouterr().err + caplog.text  # pytest holds the log records
    assert "Traceback" not in err and "UpdateFinishedTrialError" not in err, err
    assert len([line for line in err.splitlines() if "dropped" in line]) == 1, err
    states = [t.state for t in optuna.load_study(study_name="tiny",
                                                 storage=open_storage(url)).get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]  # the retry ran and completed
