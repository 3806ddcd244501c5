"""The worker fleet keeps itself whole, with real processes: workers follow a killed pool out,
a dead worker is replaced on its slot, a stalled trial is failed and resumed (by its own pool,
or through the storage by another command's worker), and a slot whose workers die at start is
given up after its restart limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here, write_spec

OWN_NET = """
[model]
name = "{name}"
options = {options}
"""


def _spec(tmp: Path, n_trials: int, epochs: int, net: str | None = None,
          options: str = "{}") -> Path:
    """The tests' tiny spec; with ``net``, a network of :mod:`tests._faulty` in place of
    ResNet-8."""
    spec = write_spec(tmp, n_trials=n_trials, epochs=epochs, sampler="random")
    if net is not None:
        text = spec.read_text().replace('[model]\nname = "resnet8"\nwidth = 4\n',
                                        OWN_NET.format(name=net, options=options))
        spec.write_text(text)
    return spec


def _hpo(*args: str, cwd: Path, **popen: object) -> subprocess.Popen[str]:
    """The real command, running (stderr piped)."""
    return subprocess.Popen([sys.executable, "-m", "hpo", *args], cwd=cwd, text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, **popen)


def _trials(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def _until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _training(url: str, name: str, n: int) -> list[FrozenTrial]:
    """RUNNING trials that have reported an epoch and are far from their last (15), when at
    least ``n`` do: a kill then lands in the trial seen, not in the next one."""
    running = [t for t in _trials(url, name)
               if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 8]
    return running if len(running) >= n else []


def _pool_processes(pid: int) -> list[int]:
    """The pool's children (its fork server, multiprocessing's resource tracker) and theirs
    (the workers, forked from the server)."""
    def children(p: int) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
        return [int(c) for c in found.split()]
    servers = children(pid)
    return servers + [w for s in servers for w in children(s)]


def _alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for a parent that no longer reaps."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _resumed_all(trials: list[FrozenTrial]) -> None:
    """Nothing RUNNING, and each interrupted trial's retry resumed every epoch it trained."""
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    for t in trials:
        if t.state != TrialState.FAIL or not t.user_attrs.get(record.EPOCHS_RUN):
            continue
        retries = [r for r in trials if t.number in r.system_attrs.get(record.RETRY_HISTORY, [])
                   and r.state in record.FINISHED]
        assert retries, f"trial {t.number} ({t.user_attrs.get(record.STOP_REASON)}) never resumed"
        assert retries[0].user_attrs[record.RESUMED_FROM_EPOCH] >= t.user_attrs[record.EPOCHS_RUN]


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_killing_the_pool_takes_its_workers_with_it_and_a_rerun_loses_nothing(
        tmp_path: Path, storage: str, study_name: str, request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "s.journal") if storage == "journal" else \
        request.getfixturevalue("pg_url")
    name = study_name
    spec = _spec(tmp_path, n_trials=2, epochs=15)
    assert hpo_here("create", str(spec), "--storage", url, "--study-name", name,
                    cwd=tmp_path).returncode == 0
    command = ("worker", "--study", name, "--storage", url, "--workers", "2")
    pool = _hpo(*command, cwd=tmp_path)
    _until(lambda: _training(url, name, 2), 120, "two workers training")
    processes = _pool_processes(pool.pid)
    assert len(processes) == 4, processes  # the server, the tracker and two workers
    os.kill(pool.pid, signal.SIGKILL)
    pool.wait()
    _until(lambda: not any(_alive(p) for p in processes), 10, "the pool's processes gone")
    interrupted = [t for t in _trials(url, name) if t.state == TrialState.FAIL]
    assert len(interrupted) == 2
    assert all("queued to resume" in t.user_attrs[record.STOP_REASON] for t in interrupted)
    again = hpo_here(*command, cwd=tmp_path)  # the same command line, run in this process
    assert again.returncode == 0, again.stderr[-3000:]
    _resumed_all(_trials(url, name))


def test_a_killed_worker_is_replaced_and_its_trial_resumes(tmp_path: Path, pg_url: str,
                                                           study_name: str) -> None:
    spec = _spec(tmp_path, n_trials=2, epochs=15)
    assert hpo_here("create", str(spec), "--storage", pg_url, "--study-name", study_name,
                    cwd=tmp_path).returncode == 0
    pool = _hpo("worker", "--study", study_name, "--storage", pg_url, "--workers", "2",
                cwd=tmp_path)
    victim = _until(lambda: _training(pg_url, study_name, 1), 120, "a worker training")[0]
    pid = victim.user_attrs[record.WORKER_PID]
    os.kill(pid, signal.SIGKILL)
    _until(lambda: len([p for p in _pool_processes(pool.pid) if _alive(p)]) == 4
           and pid not in _pool_processes(pool.pid), 10, "a replacement on the slot")
    _, err = pool.communicate(timeout=240)
    assert pool.returncode == 0, err[-3000:]
    died = [line for line in err.splitlines() if "a worker died" in line]
    assert len(died) == 1, err
    assert f"trial {victim.number} is queued to resume" in died[0]
    assert "a new worker starts on its slot" in died[0]
    trials = _trials(pg_url, study_name)
    assert "its worker process died" in trials[victim.number].user_attrs[record.STOP_REASON]
    _resumed_all(trials)


def test_a_slot_whose_workers_die_at_start_is_given_up_after_its_limit(tmp_path: Path) -> None:
    from hpo.worker._pool import RESTART_LIMIT

    spec = _spec(tmp_path, n_trials=2, epochs=2, net="tests._faulty:dies_in_worker")
    out = hpo_here("launch", str(spec), "--storage", str(tmp_path / "s.journal"), cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    died = [line for line in out.stderr.splitlines() if "a worker died" in line]
    assert len(died) == RESTART_LIMIT + 1, out.stderr
    assert all("a new worker starts on its slot in" in line for line in died[:-1])
    assert "is not restarted again" in died[-1]


def test_a_trial_stalled_in_forward_is_failed_and_resumes_in_a_new_worker(
        tmp_path: Path, study_name: str) -> None:
    url = str(tmp_path / "s.journal")
    flag = tmp_path / "hung"
    spec = _spec(tmp_path, n_trials=2, epochs=3, net="tests._faulty:hangs_once",
                 options=f'{{ flag = "{flag}" }}')
    began = time.monotonic()
    out = hpo_here("launch", str(spec), "--storage", url, "--study-name", study_name,
                   "--stall-timeout", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert flag.exists()
    trials = _trials(url, study_name)
    stalled = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stalled) == 1
    reason = stalled[0].user_attrs[record.STOP_REASON]
    assert reason.startswith("stalled: no optimizer step for") and "(stall_timeout 3 s)" in reason
    idle = float(reason.removeprefix("stalled: no optimizer step for ").split(" s ")[0])
    assert 3 <= idle <= 8, reason  # failed within stall_timeout plus a few seconds
    # the worker's own watch or its pool, whichever looks first, fails the trial and stops it
    assert "this worker is stuck" in out.stderr or "stalled; the worker is stopped" in out.stderr
    assert "a new worker starts on its slot" in out.stderr, out.stderr
    _resumed_all(trials)
    assert time.monotonic() - began < 90


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_a_whole_machine_that_hangs_is_detected_by_another_through_the_storage(
        tmp_path: Path, storage: str, study_name: str, request: pytest.FixtureRequest) -> None:
    """Machine B (a command in a process group of its own) freezes mid-trial, every thread
    of it: on a journal, nothing but the trial's stale step stamp tells (on PostgreSQL, the
    heartbeat would, after its 90 s grace). Machine A's worker sees it, fails the trial as
    stalled and resumes it from B's checkpoint; ``hpo status`` shows it stalled meanwhile."""
    url = str(tmp_path / "s.journal") if storage == "journal" else \
        request.getfixturevalue("pg_url")
    spec = _spec(tmp_path, n_trials=2, epochs=15)
    assert hpo_here("create", str(spec), "--storage", url, "--study-name", study_name,
                    cwd=tmp_path).returncode == 0
    command = ("worker", "--study", study_name, "--storage", url, "--stall-timeout", "3",
               "--checkpoint-dir", str(tmp_path / "ckpt"))
    b = _hpo(*command, cwd=tmp_path, start_new_session=True)
    try:
        frozen = _until(lambda: _training(url, study_name, 1), 120, "machine B training")[0]
        os.killpg(b.pid, signal.SIGSTOP)
        time.sleep(4)
        status = hpo_here("status", "--storage", url, "--study", study_name,
                          cwd=tmp_path).stdout
        row = next(line for line in status.splitlines() if line.startswith(f"{frozen.number} "))
        assert "STALLED (limit 3 s)" in row, status
        a = hpo_here(*command, cwd=tmp_path)  # machine A: this process and its fork server
    finally:
        os.killpg(b.pid, signal.SIGKILL)
        b.wait()
    assert a.returncode == 0, a.stderr[-3000:]
    trials = _trials(url, study_name)
    reason = trials[frozen.number].user_attrs[record.STOP_REASON]
    assert reason.startswith("stalled: no optimizer step for"), reason
    _resumed_all(trials)


def test_the_automatic_stall_limit_is_ten_gaps_between_steps_and_never_below_five_minutes(
        ) -> None:
    from hpo.storage._stall import automatic_timeout

    assert automatic_timeout(None) == 1200  # before the first step: data, restore, compile
    assert automatic_timeout(0.05) == 300
    assert automatic_timeout(45.0) == 450
