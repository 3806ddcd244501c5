"""End to end: real studies, real worker processes, real storages."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.record import STUDY_UID
from hpo.storage._backends import open_storage
from hpo.study._checkpoints import study_folder
from tests.conftest import hpo_here, storage_at, write_spec

RECORDED = {"config", "epochs_run", "wall_time_s", "device", "host", "stop_reason", "curve"}


def _ok(*args: str, cwd: Path) -> None:
    """Runs an hpo command in this process; it must succeed."""
    result = hpo_here(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]


def _study(storage: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_at(storage))


def test_two_workers_finish_the_budget_and_record_everything(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=6, epochs=3)
    storage = str(tmp_path / "s.journal")
    out = hpo_here("launch", str(spec), "--storage", storage, "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    study = _study(storage)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 6 <= len(finished) <= 6 + 1  # overshoot: at most one trial per other worker
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert {t.user_attrs["worker_pid"] for t in trials}.__len__() == 2
    for t in finished:
        assert RECORDED <= t.user_attrs.keys()
        config = t.user_attrs["config"]
        assert {"optimizer", "lr", "schedule", "weight_decay", "init"} <= config.keys()
        assert t.user_attrs["epochs_run"] == len(t.intermediate_values)
        assert len(t.user_attrs["curve"]["val_loss"]) == t.user_attrs["epochs_run"]
        assert t.user_attrs["device"] == "cpu"
    assert study.user_attrs["spec"]["study"]["name"] == "tiny"
    # the top-5 table on stdout, the progress on stderr
    assert "val_accuracy" in out.stdout and "optimizer" in out.stdout
    assert len([line for line in out.stdout.splitlines() if line[:1].isdigit()]) == 5
    assert "finished" in out.stderr and "best" in out.stderr


def test_same_spec_and_seed_with_one_worker_give_the_same_study_twice(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=4, epochs=2)
    runs = []
    for i in range(2):
        storage = str(tmp_path / f"s{i}.journal")
        _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
        runs.append([(t.params, t.state, t.value, t.intermediate_values)
                     for t in _study(storage).get_trials()])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 4


def test_diverging_config_is_pruned_with_its_reason_and_the_worker_carries_on(
    tmp_path: Path,
) -> None:
    search = 'optimizer = "sgd"\nschedule = "constant"\nlr = [1e6, 0.3]\nweight_decay = 0.0\n'
    spec = write_spec(tmp_path, n_trials=2, epochs=2, sampler="grid", search=search)
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    by_lr = {t.params["sgd.lr"]: t for t in _study(storage).get_trials()}
    bad, good = by_lr[1e6], by_lr[0.3]
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["stop_reason"].startswith("diverged: training loss")
    assert good.state == TrialState.COMPLETE and good.value > 0.3  # chance: 0.1


def test_resume_continues_the_same_study_and_refuses_another_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=2, epochs=1)
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    _ok("launch", str(spec), "--storage", storage, "--n-trials", "3", cwd=tmp_path)
    assert len(_study(storage).get_trials()) == 3
    other = write_spec(tmp_path, n_trials=2, epochs=2, name="other.toml")
    refused = hpo_here("launch", str(other), "--storage", storage, cwd=tmp_path)
    assert refused.returncode == 2
    err = refused.stderr
    assert "already exists" in err and "(differing: training.epochs)" in err, err


def test_worker_joins_an_existing_study_from_its_name_alone(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=1, epochs=1)
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    spec.unlink()  # the worker needs no file: the spec lives in the study
    _ok("worker", "--study", "tiny", "--storage", storage, "--n-trials", "3", cwd=tmp_path)
    assert len(_study(storage).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3


def test_unknown_study_for_a_worker(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=1, epochs=1)
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    refused = hpo_here("worker", "--study", "nope", "--storage", storage, cwd=tmp_path)
    assert refused.returncode == 2
    assert "no study named 'nope'; studies there: tiny" in refused.stderr


def test_storage_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    spec = write_spec(tmp_path, n_trials=1, epochs=1)
    storage = tmp_path / "env.journal"
    monkeypatch.setenv("HPO_STORAGE", str(storage))
    _ok("launch", str(spec), cwd=tmp_path)
    assert len(_study(str(storage)).get_trials()) == 1


def test_ctrl_c_stops_cleanly_and_leaves_no_trial_running(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, n_trials=50, epochs=40)
    storage = str(tmp_path / "s.journal")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "launch", str(spec), "--storage", storage,
         "--workers", "2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(1)
        if (tmp_path / "s.journal").exists():
            running = _study(storage).get_trials(states=(TrialState.RUNNING,))
            if len(running) == 2 and all(t.intermediate_values for t in running):
                break
    else:
        proc.kill()
        raise AssertionError("workers never got going")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    trials = _study(storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    reasons = [t.user_attrs.get("stop_reason") for t in stopped]
    assert reasons and all(r and r.startswith("interrupted") for r in reasons), reasons


def test_a_study_on_postgresql_with_two_workers(tmp_path: Path, pg_url: str, study_name: str
                                                ) -> None:
    spec = write_spec(tmp_path, n_trials=4, epochs=2)
    try:  # with a URL storage, checkpoints default to the working directory
        _ok("launch", str(spec), "--storage", pg_url, "--study-name", study_name,
            "--workers", "2", cwd=tmp_path)
        study = _study(pg_url, study_name)
        states = [t.state for t in study.get_trials()]
        assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= 4
        assert TrialState.RUNNING not in states
        assert study.user_attrs["spec"]["study"]["n_trials"] == 4
        folder = study_folder(study_name, study.user_attrs[STUDY_UID])
        assert folder.startswith(f"{study_name}-") and len(folder) == len(study_name) + 13
        assert list((tmp_path / "hpo-checkpoints" / folder).glob("trial-*.pt"))
    finally:
        optuna.delete_study(study_name=study_name, storage=open_storage(pg_url))


def _children(pid: int, pattern: str = "") -> list[int]:
    import subprocess

    found = subprocess.run(["pgrep", "-P", str(pid), *(["-f", pattern] if pattern else [])],
                           capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_a_worker_that_dies_idle_is_reported_as_losing_nothing(tmp_path: Path) -> None:
    """A worker killed before it took a trial: the pool says so, not 'queued to resume', and
    a new worker takes its slot."""
    from tests.conftest import REPO

    spec = write_spec(tmp_path, n_trials=2, epochs=1)
    journal = tmp_path / "s.journal"
    _ok("create", str(spec), "--storage", str(journal), cwd=tmp_path)
    # Hold the journal's write lock (Optuna's symlink lock), so no worker can create a trial
    # until the test lets go: the worker killed below is idle for certain.
    lock = Path(f"{journal}.lock")
    lock.symlink_to(journal)
    pool = subprocess.Popen([sys.executable, "-m", "hpo", "worker", "--study", "tiny",
                             "--storage", str(journal), "--workers", "2"],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline:
        # workers are forks of the pool's fork server
        workers = [w for server in _children(pool.pid, "forkserver") for w in _children(server)]
        time.sleep(0.05)
    os.kill(workers[0], signal.SIGKILL)
    lock.unlink()
    _, err = pool.communicate(timeout=120)
    assert pool.returncode == 0, err
    died = [line for line in err.splitlines() if "a worker died" in line]
    assert len(died) == 1 and "it was running no trial, so nothing was lost" in died[0], err
    assert "queued to resume" not in died[0] and "a new worker starts on its slot" in died[0]


def _misses_its_first_sigterm(ready: multiprocessing.synchronize.Event) -> None:
    """A worker whose first SIGTERM was lost, as CPython drops one that lands while the child
    is still forking: it stops (exit 0) on the next one."""
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    ready.set()
    while len(received) < 2:
        time.sleep(0.01)


def test_stopping_repeats_sigterm_until_a_worker_that_missed_it_stops() -> None:
    """The pool's stop says it again: a worker forked just as the pool was told to stop lost
    the first signal and trained on until SIGKILL 30 s later (exit -9, the pool's exit 1: seen
    under Slurm when the time limit's warning reached a pool that was starting its worker)."""
    from hpo.worker._pool import _stop

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    worker = ctx.Process(target=_misses_its_first_sigterm, args=(ready,))
    worker.start()
    assert ready.wait(30)
    _stop([worker])
    assert worker.exitcode == 0


def _sampled_params(storage: str, name: str = "tiny") -> list[tuple]:
    """Parameters of the trials a sampler proposed (not enqueued retries or replicates)."""
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()
    return [tuple(sorted(t.params.items())) for t in trials
            if "fixed_params" not in t.system_attrs and "retry_history" not in t.system_attrs]


def test_extending_a_study_by_a_relaunch_proposes_new_trials(tmp_path: Path) -> None:
    """Each new process used to replay seed + worker index: trials 4-6 repeated 0-2."""
    spec = write_spec(tmp_path, n_trials=4, epochs=1, sampler="random")
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    _ok("launch", str(spec), "--storage", storage, "--n-trials", "7", cwd=tmp_path)
    params = _sampled_params(storage)
    assert len(params) >= 7 and len(set(params)) == len(params)


def test_two_workers_started_apart_on_postgresql_never_share_a_stream(
        tmp_path: Path, pg_url: str, study_name: str) -> None:
    spec = write_spec(tmp_path, n_trials=6, epochs=1, sampler="random")
    try:
        _ok("create", str(spec), "--storage", pg_url, "--study-name", study_name, cwd=tmp_path)
        # two machines' worker 0, one after the other: each process seeds its own sampler
        for budget in ("3", "6"):
            result = hpo_here("worker", "--study", study_name, "--storage", pg_url,
                              "--n-trials", budget, cwd=tmp_path)
            assert result.returncode == 0, result.stderr[-2000:]
        params = _sampled_params(pg_url, study_name)
        assert len(params) >= 6 and len(set(params)) == len(params)
    finally:
        optuna.delete_study(study_name=study_name, storage=open_storage(pg_url))


@pytest.mark.parametrize("repeats", [False, True])
def test_a_configuration_already_finished_is_not_trained_again(tmp_path: Path,
                                                               repeats: bool) -> None:
    search = ('optimizer = ["sgd", "adam"]\nschedule = "cosine"\ninit = "kaiming_normal"\n'
              "[search.sgd]\nlr = 0.1\nweight_decay = 1e-4\n"
              "[search.adam]\nlr = 0.003\nweight_decay = 1e-5\n")
    spec = write_spec(tmp_path, n_trials=5, epochs=1, sampler="random", search=search)
    spec.write_text(spec.read_text().replace(
        "[study]\n", f"[study]\nrepeats = {str(repeats).lower()}\n"))
    storage = str(tmp_path / "s.journal")
    _ok("launch", str(spec), "--storage", storage, cwd=tmp_path)
    trials = _study(storage).get_trials()
    assert len(trials) == 5  # two configurations: at least three trials repeat one
    dupes = [t for t in trials if "duplicate_of" in t.user_attrs]
    if repeats:
        assert not dupes and all(t.user_attrs["epochs_run"] == 1 for t in trials)
        return
    distinct = {tuple(sorted(t.params.items())) for t in trials}
    assert len(distinct) == 2 and len(dupes) == 5 - 2
    for t in dupes:
        original = trials[t.user_attrs["duplicate_of"]]
        assert "duplicate_of" not in original.user_attrs and original.params == t.params
        assert t.value == original.value and t.user_attrs["epochs_run"] == 0
        assert t.user_attrs["stop_reason"] == (
            f"duplicate of trial {original.number}: its result is reused, not trained again")


def test_omp_num_threads_caps_the_workers_threads_and_never_raises_them(monkeypatch) -> None:
    """Two processes of 2 OpenMP threads on 2 busy cores spun (2.4x the CPU per epoch): whoever
    shares the cores says so in ``OMP_NUM_THREADS``, as for any OpenMP program."""
    from hpo.worker._worker import default_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(1) == cores and default_threads(2 * cores) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(4 * cores))
    assert default_threads(1) == cores  # a cap, not a request
    monkeypatch.setenv("OMP_NUM_THREADS", "all")  # not a count: ignored
    assert default_threads(1) == cores
