"""Distributed studies on a real PostgreSQL: many workers, kills, preemption, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpo.record import STUDY_UID
from hpo.storage._backends import driver_url, open_storage
from hpo.storage._rdb import CLAIMED_ORPHAN_REASON, CONNECTIONS_PER_PROCESS, ORPHAN_REASON
from hpo.study._checkpoints import study_folder
from tests.conftest import (
    REPO,
    ForkedWorker,
    OwnPostgres,
    fork_worker,
    hpo_here,
    storage_at,
    write_spec,
)

FIXED = """
optimizer = "nesterov"
schedule = "cosine"
lr = 0.05
weight_decay = 5e-4
"""
# ~0.5 s per epoch on one CPU core: slow enough to kill a worker between two epochs (the
# test polls every 0.05 s), no slower, as every test below trains several of them.
SLOW_DATA = """
[data]
name = "synthetic"
channels = 3
size = 32
train_size = 800
test_size = 100
"""


def _slow_spec(tmp: Path, epochs: int = 4, n_trials: int = 1, search: str = FIXED) -> Path:
    spec = write_spec(tmp, n_trials=n_trials, epochs=epochs, search=search)
    text = spec.read_text().replace('[data]\nname = "digits"\nval_fraction = 0.2\n', SLOW_DATA)
    text = text.replace("[study]\n", "[study]\nheartbeat_interval = 1\ngrace_period = 4\n")
    text = text.replace("width = 4", "width = 16")
    spec.write_text(text)
    return spec


def _create(tmp: Path, spec: Path, url: str, name: str) -> None:
    result = hpo_here("create", str(spec), "--storage", url, "--study-name", name, cwd=tmp)
    assert result.returncode == 0, result.stderr


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_at(url))


def _checkpoints(root: Path, url: str, name: str) -> Path:
    """The study's checkpoint folder: its name and the identity stored in it."""
    return root / study_folder(name, _study(url, name).user_attrs[STUDY_UID])


def _popen_worker(tmp: Path, url: str, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", "worker", "--study", name, "--storage", url,
         "--checkpoint-dir", str(tmp / "ckpt"), *extra],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _start_worker(tmp: Path, url: str, name: str, epochs: int, wait_for: int
                  ) -> tuple[ForkedWorker, optuna.trial.FrozenTrial]:
    """A one-trial slow study, one worker on it, and its trial once it reported ``wait_for``
    epochs: the starting point of every fault below."""
    _create(tmp, _slow_spec(tmp, epochs=epochs), url, name)
    worker = fork_worker(tmp, url, name)
    return worker, _wait_for_epochs(url, name, wait_for)


def _run_worker(tmp: Path, url: str, name: str, *extra: str) -> None:
    result = hpo_here("worker", "--study", name, "--storage", url,
                      "--checkpoint-dir", str(tmp / "ckpt"), *extra, cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]


def _wait_for_epochs(url: str, name: str, n: int, timeout: float = 180
                     ) -> optuna.trial.FrozenTrial:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = _study(url, name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # not created yet
            running = []
        for t in running:
            if len(t.intermediate_values) >= n:
                return t
        time.sleep(0.05)
    raise AssertionError(f"no trial reached {n} epochs")


@pytest.fixture
def pg_study(pg_url: str, study_name: str):
    yield pg_url, study_name
    try:
        optuna.delete_study(study_name=study_name, storage=open_storage(pg_url))
    except KeyError:
        pass


def test_four_workers_finish_the_budget_and_leave_nothing_behind(tmp_path, pg_study) -> None:
    url, name = pg_study
    spec = write_spec(tmp_path, n_trials=8, epochs=2)
    _create(tmp_path, spec, url, name)
    result = hpo_here("worker", "--study", name, "--storage", url, "--workers", "4",
                      "--checkpoint-dir", str(tmp_path / "ckpt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    trials = _study(url, name).get_trials()
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert 8 <= sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) <= 8 + 3
    assert all(t.user_attrs.get("stop_reason") for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 4
    # retention: only the best 3 complete trials keep a checkpoint
    kept = sorted(_checkpoints(tmp_path / "ckpt", url, name).glob("trial-*.pt"))
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                      key=lambda t: -t.value)
    assert {p.name for p in kept} == {f"trial-{t.number}.pt" for t in complete[:3]}


def test_killed_worker_trial_resumes_from_its_checkpoint_with_the_same_result(
    tmp_path, pg_study
) -> None:
    url, name = pg_study
    victim, killed = _start_worker(tmp_path, url, name, epochs=4, wait_for=2)
    os.kill(victim.pid, signal.SIGKILL)  # the machine dies: no handler runs
    victim.wait()
    time.sleep(0.5)
    assert len(_study(url, name).trials[killed.number].intermediate_values) == 2
    assert _study(url, name).trials[killed.number].state == TrialState.RUNNING

    # A new worker finds the stale trial, fails it and runs its retry from the checkpoint, and
    # one fresh trial of the same fixed config: the uninterrupted reference.
    _run_worker(tmp_path, url, name, "--n-trials", "2")
    trials = _study(url, name).get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    (retry,) = retries
    host = killed.user_attrs["host"]
    assert trials[killed.number].user_attrs["stop_reason"] == (
        f"no heartbeat for 4 s on host {host}; retried as trial {retry.number}")
    reference = next(t for t in trials if t.number not in (killed.number, retry.number))
    assert retry.state == reference.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] == 2  # trained epochs 3 and 4 only
    assert retry.value == reference.value  # bit for bit
    assert retry.intermediate_values == reference.intermediate_values
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_sigterm_checkpoints_exits_0_and_another_worker_resumes(tmp_path, pg_study) -> None:
    url, name = pg_study
    worker, first = _start_worker(tmp_path, url, name, epochs=3, wait_for=1)
    sent = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)  # what Slurm and Kubernetes send on preemption
    code = worker.wait(30)
    assert code == 0 and time.monotonic() - sent < 30, worker.output()[-3000:]
    trials = _study(url, name).get_trials()
    assert trials[first.number].state == TrialState.FAIL
    assert "checkpointed and queued to resume" in trials[first.number].user_attrs["stop_reason"]
    (queued,) = [t for t in trials if t.number != first.number]
    assert queued.state == TrialState.WAITING
    # The retry keeps the lineage, not the description of a run it has not made yet.
    assert trials[first.number].user_attrs["epochs_run"] >= 1
    assert not {"epochs_run", "stop_reason", "worker_pid", "host", "curve"} & set(
        queued.user_attrs), queued.user_attrs
    assert queued.system_attrs["retry_history"] == [first.number]

    _run_worker(tmp_path, url, name)
    retry = next(t for t in _study(url, name).get_trials()
                 if t.system_attrs.get("failed_trial") == first.number)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] >= 1
    assert sorted(retry.intermediate_values) == [1, 2, 3]


def test_a_late_worker_whose_trial_was_retried_writes_nothing_and_says_so_in_one_line(
        tmp_path, pg_study) -> None:
    url, name = pg_study
    late, frozen = _start_worker(tmp_path, url, name, epochs=3, wait_for=1)
    os.kill(late.pid, signal.SIGSTOP)  # a long GC pause, a swapped-out VM, a network split
    try:
        _run_worker(tmp_path, url, name)  # fails the silent trial and completes its retry
    finally:
        os.kill(late.pid, signal.SIGCONT)
    code, err = late.wait(), late.output()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "UpdateFinishedTrialError" not in err, err[-3000:]
    dropped = [line for line in err.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and "declared stale by another worker" in dropped[0], err[-3000:]
    trials = _study(url, name).get_trials()
    assert trials[frozen.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == frozen.number]
    assert retry.state == TrialState.COMPLETE and sorted(retry.intermediate_values) == [1, 2, 3]


def test_a_killed_launch_on_the_journal_file_is_resumed_by_the_next_launch(tmp_path) -> None:
    """SIGKILL of the worker of an `hpo launch` (the OOM killer; kill -9 of a batch job kills
    its pool too): the journal has no heartbeat, so the relaunch must see that nobody owns
    the trial."""
    spec = _slow_spec(tmp_path, epochs=4)
    journal = str(tmp_path / "hpo.journal")
    _create(tmp_path, spec, journal, "tiny")
    worker = fork_worker(tmp_path, journal, "tiny")
    killed = _wait_for_epochs(journal, "tiny", 2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(0.5)
    assert _study(journal, "tiny").trials[killed.number].state == TrialState.RUNNING

    again = hpo_here("launch", str(spec), "--checkpoint-dir", str(tmp_path / "ckpt"),
                     cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = _study(journal, "tiny").get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert "no process holds the trial's lock" in dead.user_attrs["stop_reason"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] >= 2  # resumed from the dead run's checkpoint
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]


@pytest.mark.parametrize("delay", [0.3, 2.0])
def test_sigterm_during_start_up_exits_0(tmp_path, pg_study, delay: float) -> None:
    """Before the handler was installed first, a SIGTERM during imports or the first storage
    reads ended `hpo worker` (and its workers) with 143 / -15 instead of a clean exit 0."""
    url, name = pg_study
    _create(tmp_path, write_spec(tmp_path, n_trials=2, epochs=1), url, name)
    worker = _popen_worker(tmp_path, url, name, "--workers", "2")
    time.sleep(delay)
    os.killpg(worker.pid, signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "died" not in err, err[-3000:]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, pg_study) -> None:
    url, name = pg_study
    victim, hit = _start_worker(tmp_path, url, name, epochs=4, wait_for=2)
    os.kill(victim.pid, signal.SIGSTOP)  # hold it still while its checkpoint is damaged
    folder = _checkpoints(tmp_path / "ckpt", url, name)
    newest = folder / f"trial-{hit.number}.pt"
    assert (folder / f"trial-{hit.number}.prev.pt").exists()
    newest.write_bytes(os.urandom(4096))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()

    result = hpo_here("worker", "--study", name, "--storage", url,
                      "--checkpoint-dir", str(tmp_path / "ckpt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint {newest} is unreadable" in result.stderr, result.stderr[-3000:]
    trials = _study(url, name).get_trials()
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == hit.number]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] >= 1
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]


def test_an_unwritable_checkpoint_directory_is_a_warning_and_checkpoints_come_back(
        tmp_path, pg_study) -> None:
    """Decided: trials train on without resume protection (one warning per worker), nothing
    fails, and checkpoints are written again once the directory is back."""
    url, name = pg_study
    spec = _slow_spec(tmp_path, epochs=4, n_trials=2)
    _create(tmp_path, spec, url, name)
    workers = [fork_worker(tmp_path, url, name) for _ in range(2)]
    first = _wait_for_epochs(url, name, 1)
    folder = _checkpoints(tmp_path / "ckpt", url, name)
    away = folder.with_name(folder.name + ".away")
    folder.rename(away)
    folder.write_text("not a directory")  # as root, chmod would not stop a write; this does
    deadline = time.monotonic() + 60
    while len(_study(url, name).trials[first.number].intermediate_values) < 3:
        assert time.monotonic() < deadline, "no epoch ended while the directory was broken"
        time.sleep(0.1)
    folder.unlink()
    away.rename(folder)
    codes = [w.wait(300) for w in workers]
    err = "".join(w.output() for w in workers)
    assert codes == [0, 0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert 1 <= err.count("cannot write") <= 2 and "writable again" in err, err[-3000:]
    trials = _study(url, name).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) >= 2
    assert not [t for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]
    kept = {p.name for p in folder.glob("trial-*.pt")}
    assert f"trial-{first.number}.pt" in kept  # written after the directory came back


def test_a_claimed_retry_whose_worker_died_before_its_heartbeat_is_queued_again(
        tmp_path, pg_study) -> None:
    url, name = pg_study
    worker, first = _start_worker(tmp_path, url, name, epochs=3, wait_for=2)
    os.kill(worker.pid, signal.SIGTERM)  # checkpointed; its retry is queued
    assert worker.wait() == 0, worker.output()[-3000:]
    storage = open_storage(url)
    (queued,) = _study(url, name).get_trials(states=(TrialState.WAITING,))
    # A worker pops the retry and dies before its first heartbeat (or loses the reply).
    assert storage.set_trial_state_values(queued._trial_id, TrialState.RUNNING)

    result = hpo_here("worker", "--study", name, "--storage", url,
                      "--checkpoint-dir", str(tmp_path / "ckpt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(url, name).get_trials()
    claimed = trials[queued.number]
    assert claimed.state == TrialState.FAIL
    reason = claimed.user_attrs["stop_reason"]
    assert reason.startswith(CLAIMED_ORPHAN_REASON) and "queued to resume as trial" in reason
    (again,) = [t for t in trials
                if t.system_attrs.get("retry_history") == [first.number, queued.number]]
    assert again.state == TrialState.COMPLETE and again.user_attrs["resumed_from_epoch"] >= 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_same_named_studies_on_two_storages_keep_their_own_checkpoints(tmp_path, pg_study
                                                                      ) -> None:
    url, name = pg_study
    spec = write_spec(tmp_path, n_trials=3, epochs=2)
    journal = str(tmp_path / "hpo.journal")
    for storage in (journal, url):  # same directory, same name, default checkpoint directory
        result = hpo_here("launch", str(spec), "--study-name", name, "--storage", storage,
                          cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "hpo-checkpoints"
    folders = {_checkpoints(root, s, name) for s in (journal, url)}
    assert len(folders) == 2 and all(f.is_dir() for f in folders)
    for storage in (journal, url):  # retention of one study deleted none of the other's
        complete = [t for t in _study(storage, name).get_trials()
                    if t.state == TrialState.COMPLETE]
        kept = {p.name for p in _checkpoints(root, storage, name).glob("trial-*.pt")}
        assert kept == {f"trial-{t.number}.pt" for t in complete}


def test_postgresql_restart_mid_study_loses_nothing(tmp_path, own_pg: OwnPostgres,
                                                    study_name: str) -> None:
    """The server restarts (its own, so that no other test loses its connections)."""
    url, name = own_pg.url, study_name
    spec = _slow_spec(tmp_path, epochs=2, n_trials=4, search=FIXED)
    _create(tmp_path, spec, url, name)
    workers = _popen_worker(tmp_path, url, name, "--workers", "2")
    _wait_for_epochs(url, name, 1)
    own_pg.restart()
    _, err = workers.communicate(timeout=300)
    assert workers.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    trials = _study(url, name).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_trial_whose_creation_reply_was_lost_is_failed_not_waited_for(tmp_path, pg_study
                                                                       ) -> None:
    url, name = pg_study
    spec = write_spec(tmp_path, n_trials=1, epochs=1)
    spec.write_text(spec.read_text().replace(
        "[study]\n", "[study]\nheartbeat_interval = 1\ngrace_period = 3\n"))
    _create(tmp_path, spec, url, name)
    # What a create_new_trial leaves behind when it commits and its reply is lost: a RUNNING
    # trial that no process runs and that never records a heartbeat.
    storage = open_storage(url)
    orphan = storage.create_new_trial(storage.get_study_id_from_name(name))
    result = hpo_here("worker", "--study", name, "--storage", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "orphaned" in result.stderr
    trials = _study(url, name).get_trials()
    (lost,) = [t for t in trials if t._trial_id == orphan]
    assert lost.state == TrialState.FAIL and lost.user_attrs["stop_reason"] == ORPHAN_REASON
    assert [t.state for t in trials if t._trial_id != orphan] == [TrialState.COMPLETE]


def _connections(engine: sqlalchemy.engine.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )).scalar()


def test_real_workers_stay_within_the_documented_connection_count(tmp_path, own_pg: OwnPostgres,
                                                                   study_name: str) -> None:
    """``hpo worker --workers 8`` with heartbeats: its own processes (the parent, the fork
    server, 8 workers) hold at most 2 connections each, the fork server none. On a server of
    its own, so that no other test's connections are counted."""
    url, name, n = own_pg.url, study_name, 8
    spec = write_spec(tmp_path, n_trials=2 * n, epochs=1)
    spec.write_text(spec.read_text().replace("[study]\n", "[study]\nheartbeat_interval = 1\n"))
    _create(tmp_path, spec, url, name)
    engine = sqlalchemy.create_engine(driver_url(url), poolclass=sqlalchemy.pool.NullPool)
    baseline = _connections(engine)
    worker, peak = _popen_worker(tmp_path, url, name, "--workers", str(n)), 0
    while worker.poll() is None:
        peak = max(peak, _connections(engine) - baseline)
        time.sleep(0.05)
    assert worker.returncode == 0, worker.stderr.read()[-3000:]
    assert len(_study(url, name).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
               ) >= 2 * n
    assert n < peak <= n * CONNECTIONS_PER_PROCESS + 2  # documented: 2N + 2


def test_workers_through_the_grpc_proxy(tmp_path, pg_study) -> None:
    url, name = pg_study
    port = 13000 + os.getpid() % 1000
    proxy = subprocess.Popen([sys.executable, "-m", "hpo", "proxy", "--storage", url,
                              "--port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE,
                             text=True)
    try:
        spec = write_spec(tmp_path, n_trials=3, epochs=1)
        result = hpo_here("launch", str(spec), "--storage", f"grpc://127.0.0.1:{port}",
                          "--study-name", name, "--workers", "2", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    finished = _study(url, name).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) >= 3


def test_status_lists_studies_and_running_trials(tmp_path, pg_study) -> None:
    url, name = pg_study
    spec = _slow_spec(tmp_path, epochs=3)
    _create(tmp_path, spec, url, name)
    worker = fork_worker(tmp_path, url, name)
    try:
        _wait_for_epochs(url, name, 1)
        result = hpo_here("status", "--storage", url, "--study", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "1 running" in result.stdout and "last heartbeat" in result.stdout
        assert " s ago" in result.stdout and "cpu" in result.stdout
        listing = hpo_here("status", "--storage", url, cwd=tmp_path).stdout
        assert name in listing and "hpo spec" in listing
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(30)


@pytest.mark.parametrize("case", ["unreachable", "unknown-role", "unknown-study",
                                  "foreign-study", "unwritable-checkpoints"])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, pg_study, case: str) -> None:
    url, name = pg_study
    args = ["worker", "--study", name, "--storage", url,
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    expect = ""
    if case == "unreachable":
        args[4] = "postgresql://hpo:s3cret@127.0.0.1:1/test"
        expect = "postgresql://hpo:***@127.0.0.1:1/test: cannot open"
    elif case == "unknown-role":
        args[4] = url.replace("postgres@", "nobody:s3cret@")
        expect = 'role "nobody" does not exist'
    elif case == "unknown-study":
        expect = f"no study named {name!r}"
    elif case == "foreign-study":
        optuna.create_study(study_name=name, storage=open_storage(url))
        expect = "has no hpo spec"
    else:
        spec = write_spec(tmp_path)
        hpo_here("create", str(spec), "--storage", url, "--study-name", name, cwd=tmp_path)
        blocker = tmp_path / "ckpt"
        blocker.write_text("a file where the directory should be")
        expect = "checkpoint directory"
    result = hpo_here(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: ") and expect in lines[0], \
        result.stderr
    assert "s3cret" not in result.stderr


class _Exploit:
    """What an attacker who can write one file on the shared checkpoint volume plants: a
    pickle that calls code when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_by_a_real_retry_and_runs_nothing(
        tmp_path, pg_study) -> None:
    import torch

    url, name = pg_study
    worker, first = _start_worker(tmp_path, url, name, epochs=3, wait_for=1)
    os.kill(worker.pid, signal.SIGTERM)  # checkpointed, retry queued
    assert worker.wait(30) == 0, worker.output()[-3000:]
    folder = _checkpoints(tmp_path / "ckpt", url, name)
    marker = tmp_path / "pwned"
    planted = sorted(folder.glob("trial-*.pt"))
    assert planted
    for path in planted:
        torch.save({"model": _Exploit(marker), "config": {}}, path)

    result = hpo_here("worker", "--study", name, "--storage", url, "--checkpoint-dir",
                      str(tmp_path / "ckpt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists()  # the pickle's code never ran
    refused = [line for line in result.stderr.splitlines() if "unreadable" in line]
    assert refused and all(str(folder) in line for line in refused), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    retry = next(t for t in _study(url, name).get_trials()
                 if t.system_attrs.get("failed_trial") == first.number)
    assert retry.state == TrialState.COMPLETE  # started afresh, still ends with a result
    assert "resumed_from_epoch" not in retry.user_attrs
    assert sorted(retry.intermediate_values) == [1, 2, 3]


@pytest.mark.parametrize("heartbeat", ["none", "stale"])
def test_the_end_of_study_wait_on_a_dead_running_trial_is_bounded(tmp_path, pg_study,
                                                                   heartbeat: str) -> None:
    """The budget is met and a trial is left RUNNING by a dead worker, with no heartbeat row
    (it died right after claiming it) or a stale one: a new worker waits at most about one
    grace period for it (4 s here), fails it, runs its retry and ends. Every wait of the
    worker loop is bounded this way: a trial with a heartbeat row goes stale after the grace
    period, one without is failed by fail_orphans after it, and a storage call gives up after
    HPO_DB_RETRY_S."""
    url, name = pg_study
    _create(tmp_path, _slow_spec(tmp_path, epochs=1, n_trials=1), url, name)
    study = _study(url, name)
    storage = open_storage(url)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(value=0.5, params={"x": 0.5}, distributions=dist))
    dead = storage.create_new_trial(study._study_id)  # RUNNING, its worker gone
    if heartbeat == "stale":
        storage.record_heartbeat(dead)
        time.sleep(5)
    start = time.monotonic()
    result = hpo_here("worker", "--study", name, "--storage", url, "--checkpoint-dir",
                      str(tmp_path / "ckpt"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - start < 90  # start-up, one grace period, one 1-epoch retry
    trials = _study(url, name).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials[1].state == TrialState.FAIL
