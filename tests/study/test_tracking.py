"""Trackers against the real tools: an MLflow tracking server started here (its own backend
store and artifact root), read back through ``mlflow``'s client; TensorBoard's event files
read back by TensorBoard's own reader. Needs the ``track`` extra: CI runs these in the
environment of the optional extras (``pytest -m track``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here, write_spec

pytestmark = pytest.mark.track
mlflow = pytest.importorskip("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _mlflow_server(folder: Path, port: int) -> Iterator[str]:
    """A real MLflow tracking server on ``port``, its store and artifacts under ``folder``."""
    folder.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no MLflow server"
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _spec(tmp: Path, n_trials: int, epochs: int, track: str, pruner: str = "median") -> Path:
    spec = write_spec(tmp, n_trials=n_trials, epochs=epochs, sampler="random")
    text = spec.read_text() + f"\n[track]\n{track}\n"
    if pruner == "none":  # every trial trains to the end: a steady pace
        text = text.replace('name = "median"\nn_startup_trials = 2\nn_warmup_steps = 1',
                            'name = "none"')
    spec.write_text(text)
    return spec


def _trained(url: str, name: str) -> list[FrozenTrial]:
    """Trials that trained (a stored curve), retries and killed ones included (none before the
    study exists)."""
    try:
        trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    except KeyError:
        return []
    return [t for t in trials if t.user_attrs.get(record.CURVE, {}).get("val_accuracy")]


def _runs(uri: str, experiment: str) -> dict[int, object]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    numbers = [int(r.data.tags["hpo.trial"]) for r in runs]
    assert len(numbers) == len(set(numbers)), f"a trial logged twice: {sorted(numbers)}"
    return {int(r.data.tags["hpo.trial"]): r for r in runs}


def _curve(uri: str, run: object) -> list[float]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.info.run_id, "val_accuracy")  # type: ignore[attr-defined]
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_two_workers_on_postgresql_one_killed_log_one_run_per_trial_with_its_curve(
        tmp_path: Path, pg_url: str, study_name: str) -> None:
    with _mlflow_server(tmp_path / "mlflow", _free_port()) as uri:
        spec = _spec(tmp_path, n_trials=4, epochs=20,
                     track=f'mlflow = true\nmlflow_uri = "{uri}"')
        assert hpo_here("create", str(spec), "--storage", pg_url, "--study-name", study_name,
                        cwd=tmp_path).returncode == 0
        pool = subprocess.Popen(
            [sys.executable, "-m", "hpo", "worker", "--study", study_name, "--storage", pg_url,
             "--workers", "2"], cwd=tmp_path, text=True, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 120
        while not (victims := [t for t in _trained(pg_url, study_name)
                               if t.state == TrialState.RUNNING  # far from its end
                               and 2 <= len(t.intermediate_values) <= 10]):
            assert time.monotonic() < deadline and pool.poll() is None, "no trial training"
            time.sleep(0.1)
        os.kill(victims[0].user_attrs[record.WORKER_PID], signal.SIGKILL)
        _, err = pool.communicate(timeout=300)
        assert pool.returncode == 0, err[-3000:]
        trials = _trained(pg_url, study_name)
        runs = _runs(uri, study_name)
        assert sorted(runs) == sorted(t.number for t in trials)
        for t in trials:
            assert _curve(uri, runs[t.number]) == t.user_attrs[record.CURVE]["val_accuracy"], \
                f"trial {t.number}"
            assert runs[t.number].data.params, f"trial {t.number} has no parameters"
        killed = runs[victims[0].number]
        assert killed.info.status == "KILLED"
        retry = next(r for n, r in runs.items()
                     if r.data.tags.get("hpo.continues") == str(victims[0].number))
        assert retry.data.tags["hpo.kind"] == "retry"
        assert retry.data.tags["hpo.continues_run"] == killed.info.run_id
        finished = [r for n, r in runs.items() if r.info.status == "FINISHED"]
        assert finished and all(r.data.tags["hpo.state"] == "COMPLETE" for r in finished)


def test_a_tracking_server_that_goes_down_costs_no_trial_and_later_trials_log_again(
        tmp_path: Path) -> None:
    port = _free_port()
    folder = tmp_path / "mlflow"
    journal = str(tmp_path / "s.journal")
    uri = f"http://127.0.0.1:{port}"
    secret = f"http://bob:s3cret@127.0.0.1:{port}"  # credentials must never be printed
    spec = _spec(tmp_path, n_trials=10, epochs=20,
                 track=f'mlflow = true\nmlflow_uri = "{secret}"', pruner="none")
    pool = None
    with _mlflow_server(folder, port):
        pool = subprocess.Popen(
            [sys.executable, "-m", "hpo", "launch", str(spec), "--storage", journal],
            cwd=tmp_path, text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 120
        while len([t for t in _trained(journal, "tiny") if t.state != TrialState.RUNNING]) < 1:
            assert time.monotonic() < deadline and pool.poll() is None, "no trial finished"
            time.sleep(0.1)
    down = {t.number for t in _trained(journal, "tiny")}  # the server is down from here
    deadline = time.monotonic() + 120
    while len(_trained(journal, "tiny")) < len(down) + 2:
        assert time.monotonic() < deadline and pool.poll() is None, "trials stopped"
        time.sleep(0.1)
    with _mlflow_server(folder, port):
        up = max(t.number for t in _trained(journal, "tiny"))  # started while it was down
        _, err = pool.communicate(timeout=300)
        assert pool.returncode == 0, err[-3000:]
        trials = _trained(journal, "tiny")
        assert all(t.state != TrialState.RUNNING for t in trials)
        runs = _runs(uri, "tiny")
        later = [t for t in trials if t.number > up]
        assert later and all(t.number in runs for t in later), (sorted(runs), up)
        for t in later:
            assert _curve(uri, runs[t.number]) == t.user_attrs[record.CURVE]["val_accuracy"]
    warnings = [line for line in err.splitlines() if "mlflow tracking failed" in line]
    assert len(warnings) == 1, err  # one worker, one line
    assert "s3cret" not in err


def test_tensorboard_event_files_hold_each_trials_curve_and_hparams(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = _spec(tmp_path, n_trials=3, epochs=3, track="")
    journal = str(tmp_path / "s.journal")
    out = hpo_here("launch", str(spec), "--storage", journal, "--track", "tensorboard",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    root = tmp_path / "hpo-checkpoints" / "tensorboard" / "tiny"
    trials = _trained(journal, "tiny")
    assert sorted(p.name for p in root.iterdir()) == sorted(f"trial-{t.number}" for t in trials)
    for t in trials:
        events = EventAccumulator(str(root / f"trial-{t.number}"))
        events.Reload()
        curve = [e.value for e in events.Scalars("val_accuracy")]
        assert curve == pytest.approx(t.user_attrs[record.CURVE]["val_accuracy"], rel=1e-6)
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
