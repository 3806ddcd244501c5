"""Storage load at fleet size: many worker processes, tiny trials, so the storage is the load.

    .venv/bin/python scripts/bench_load.py [--pg-workers 32] [--journal-workers 16]
        [--trials-per-worker 4] [--storage URL]

Each phase creates a study of one-epoch trials on an 8x8 synthetic dataset (a trial trains in a
fraction of a second, so workers spend their time in storage calls) and runs it with one
``hpo worker --workers N`` on this machine: first N = 32 on PostgreSQL (heartbeats on), then
N = 16 on a journal file. A probe in this process meanwhile reads the study's trials every
0.2 s (the call every worker makes around each trial) and, on PostgreSQL, counts the
connections to the database. Per phase it prints trials per second (finished trials over the
wall time of the worker command, start-up included), the peak connections against the
documented bound 2N + 2, the probe's p50 and p99 latency, and the checks: ``lost`` (budget not
reached, or trials left RUNNING or WAITING), ``duplicated`` (a retry chain with two complete
trials) and ``tracebacks`` in the output. The last line holds every figure as key=value; the
exit status is 0 only when nothing was lost or duplicated, no traceback appeared and the
connections stayed within the bound. Faults under load: ``scripts/chaos.py --workers 16``.
It talks only to the local PostgreSQL and files under a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpo import record  # noqa: E402
from hpo.storage._backends import driver_url, open_storage  # noqa: E402
from hpo.storage._rdb import CONNECTIONS_PER_PROCESS  # noqa: E402

DEFAULT_URL = os.environ.get("HPO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SPEC = """
[study]
name = "{name}"
n_trials = {trials}
heartbeat_interval = 5
grace_period = 30
[sampler]
name = "random"
seed = 0
[pruner]
name = "none"
[data]
name = "synthetic"
channels = 1
size = 8
train_size = 64
test_size = 16
[model]
name = "resnet8"
width = 2
[training]
epochs = 1
batch_size = 64
diagnostics = false
[search]
optimizer = ["sgd", "adam"]
"""


class Probe(threading.Thread):
    """Reads the study's trials every 0.2 s (latency) and counts database connections."""

    def __init__(self, url: str, name: str, engine: sqlalchemy.Engine | None) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.engine = url, name, engine
        self.latencies: list[float] = []
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        storage = open_storage(self.url)
        study_id = storage.get_study_id_from_name(self.name)
        while not self.done.wait(0.2):
            start = time.perf_counter()
            storage.get_all_trials(study_id, deepcopy=False)
            self.latencies.append(time.perf_counter() - start)
            if self.engine is not None:
                with self.engine.connect() as conn:
                    n = conn.execute(sqlalchemy.text(
                        "select count(*) from pg_stat_activity where datname = "
                        "current_database() and pid <> pg_backend_pid()")).scalar()
                self.peak = max(self.peak, int(n) - 1)  # the probe's own storage connection


def phase(label: str, url: str, workers: int, per_worker: int, tmp: Path) -> dict[str, float]:
    name = f"load-{label}-{uuid.uuid4().hex[:8]}"
    spec = tmp / f"{name}.toml"
    trials = workers * per_worker
    spec.write_text(SPEC.format(name=name, trials=trials))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    hpo = [sys.executable, "-m", "hpo"]
    created = subprocess.run([*hpo, "create", str(spec), "--storage", url], cwd=tmp, env=env,
                             capture_output=True, text=True)
    if created.returncode != 0:
        raise SystemExit(created.stderr)
    engine = sqlalchemy.create_engine(driver_url(url)) if "://" in url else None
    probe = Probe(url, name, engine)
    probe.start()
    start = time.monotonic()
    run = subprocess.run([*hpo, "worker", "--study", name, "--storage", url, "--workers",
                          str(workers), "--checkpoint-dir", str(tmp / "ckpt")], cwd=tmp,
                         env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - start
    probe.done.set()
    probe.join()
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    all_trials = study.get_trials(deepcopy=False)
    finished = [t for t in all_trials if t.state in record.FINISHED]
    left = [t for t in all_trials if t.state in (optuna.trial.TrialState.RUNNING,
                                                 optuna.trial.TrialState.WAITING)]
    chains: dict[int, int] = {}
    for t in all_trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            root = int(t.system_attrs.get(record.FAILED_TRIAL, t.number))
            chains[root] = chains.get(root, 0) + 1
    lat = sorted(probe.latencies) or [0.0]
    out = {
        f"{label}_workers": workers,
        f"{label}_trials": len(finished),
        f"{label}_trials_per_s": round(len(finished) / wall, 2),
        f"{label}_wall_s": round(wall, 1),
        f"{label}_p50_ms": round(1000 * statistics.median(lat), 1),
        f"{label}_p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        f"{label}_lost": int(len(finished) < trials) + len(left),
        f"{label}_duplicated": sum(n - 1 for n in chains.values() if n > 1),
        f"{label}_tracebacks": (run.stdout + run.stderr).count("Traceback"),
        f"{label}_exit": run.returncode,
    }
    if engine is not None:
        out[f"{label}_peak_connections"] = probe.peak
        out[f"{label}_connection_bound"] = CONNECTIONS_PER_PROCESS * workers + 2
        engine.dispose()
        optuna.delete_study(study_name=name, storage=open_storage(url))
    print(f"{label}: " + " ".join(f"{k.split('_', 1)[1]}={v}" for k, v in out.items()),
          flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=DEFAULT_URL, help="PostgreSQL URL")
    parser.add_argument("--pg-workers", type=int, default=32)
    parser.add_argument("--journal-workers", type=int, default=16)
    parser.add_argument("--trials-per-worker", type=int, default=4)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures |= phase("pg", args.storage, args.pg_workers, args.trials_per_worker, Path(tmp))
        figures |= phase("journal", str(Path(tmp) / "load.journal"), args.journal_workers,
                         args.trials_per_worker, Path(tmp))
    ok = all(figures[f"{p}_{k}"] == 0 for p in ("pg", "journal")
             for k in ("lost", "duplicated", "tracebacks", "exit"))
    ok = ok and figures["pg_peak_connections"] <= figures["pg_connection_bound"]
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" ok={int(ok)}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
