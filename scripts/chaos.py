"""Soak test: a small study on PostgreSQL while workers are killed, connections dropped and the
database restarted, on a bounded schedule; then checks that nothing was lost.

    .venv/bin/python scripts/chaos.py [--storage URL] [--workers 3] [--trials 8] [--chaos-s 60]
        [--epochs 4] [--train-size 1500]

Workers are separate ``hpo worker`` processes (each its own process group, like separate
machines sharing one checkpoint directory). During ``--chaos-s`` seconds, every 3-8 s one
fault, drawn with ``--seed``: SIGKILL of a worker's whole process group (a replacement starts),
every connection of the database terminated, or (at most ``--restarts`` times) a PostgreSQL
restart. Then fresh workers finish the study. The last line:

    lost_trials=0 left_running=0 tracebacks=0 resumed=N foreign_resumes=0 faults=...

``lost_trials``: retry chains (a trial and its retries) that trained and ended with no COMPLETE
or PRUNED member; ``left_running``: RUNNING or WAITING trials at the end; ``tracebacks``: in any
worker's output; ``resumed``: retries that resumed from a checkpoint (epochs > 0);
``foreign_resumes``: resumes from a checkpoint of another study (must be 0). Exit 0 only when
the first three and the last are 0. Needs the local PostgreSQL (``pg_ctlcluster``) and talks
only to it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_URL = os.environ.get("HPO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

SPEC = """
[study]
name = "chaos"
n_trials = {trials}
heartbeat_interval = 1
grace_period = 5
max_retry = 20
[sampler]
name = "random"
seed = 0
[pruner]
name = "none"
[data]
name = "synthetic"
train_size = {train_size}
test_size = 50
[model]
name = "resnet8"
width = 16
[training]
epochs = {epochs}
batch_size = 128
[search]
optimizer = ["sgd", "nesterov"]
schedule = "cosine"
"""


class Fleet:
    """``hpo worker`` processes, each in its own session, their output kept in files."""

    def __init__(self, url: str, name: str, work: Path) -> None:
        self.url, self.name, self.work = url, name, work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> None:
        log = self.work / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "hpo", "worker", "--study", self.name, "--storage", self.url,
             "--checkpoint-dir", str(self.work / "ckpt")],
            cwd=self.work, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)}))

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


def drop_connections(url: str) -> None:
    import sqlalchemy

    from hpo.storage._backends import driver_url

    engine = sqlalchemy.create_engine(driver_url(url))
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        conn.commit()
    engine.dispose()


def restart_postgres() -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                   check=True, timeout=120, capture_output=True)


def verdict(url: str, name: str, output: str) -> dict[str, int]:
    """The figures of the last line, read from the finished study."""
    import optuna
    from optuna.trial import TrialState

    from hpo import record
    from hpo.storage._backends import open_storage
    from hpo.storage._rdb import ORPHAN_REASON

    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    chains: dict[int, list] = {}
    for t in trials:
        chains.setdefault(t.system_attrs.get(record.FAILED_TRIAL, t.number), []).append(t)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    lost = sum(
        1 for members in chains.values()
        if not any(t.state in finished for t in members)
        and not all(t.user_attrs.get(record.STOP_REASON) == ORPHAN_REASON for t in members))
    return {
        "lost_trials": lost,
        "left_running": sum(t.state in (TrialState.RUNNING, TrialState.WAITING)
                            for t in trials),
        "tracebacks": output.count("Traceback"),
        "resumed": sum(t.user_attrs.get(record.RESUMED_FROM_EPOCH, 0) > 0 for t in trials),
        "foreign_resumes": output.count("belongs to another study"),
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=DEFAULT_URL)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=1500,
                        help="training images per trial (smaller: the storage, not training, "
                             "is the load, as in bench_load.py)")
    parser.add_argument("--chaos-s", type=float, default=60.0)
    parser.add_argument("--restarts", type=int, default=1, help="PostgreSQL restarts at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    faults = {"kill": 0, "drop": 0, "restart": 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "chaos.toml").write_text(SPEC.format(trials=args.trials, epochs=args.epochs,
                                                          train_size=args.train_size))
        subprocess.run([sys.executable, "-m", "hpo", "create", "chaos.toml", "--storage",
                        args.storage, "--study-name", name], cwd=work, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        fleet = Fleet(args.storage, name, work)
        for _ in range(args.workers):
            fleet.start()
        end = time.monotonic() + args.chaos_s
        while time.monotonic() < end and fleet.alive():
            time.sleep(rng.uniform(3, 8))
            kinds = ["kill", "kill", "drop"] + (
                ["restart"] if faults["restart"] < args.restarts else [])
            kind = rng.choice(kinds)
            if kind == "kill":
                victim = rng.choice(fleet.alive() or [None])
                if victim is None:
                    break
                os.killpg(victim.pid, signal.SIGKILL)
                fleet.start()
            elif kind == "drop":
                drop_connections(args.storage)
            else:
                restart_postgres()
            faults[kind] += 1
            print(f"[chaos] {kind} at {args.chaos_s - (end - time.monotonic()):.0f} s",
                  flush=True)
        fleet.start()  # a fresh worker runs what is queued and waits out stale trials
        fleet.wait(timeout=600)
        figures = verdict(args.storage, name, fleet.text())
        import optuna

        from hpo.storage._backends import open_storage

        optuna.delete_study(study_name=name, storage=open_storage(args.storage))
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + " faults=" +
          ",".join(f"{k}:{v}" for k, v in faults.items()))
    bad = ("lost_trials", "left_running", "tracebacks", "foreign_resumes")
    return 0 if all(figures[k] == 0 for k in bad) else 1


if __name__ == "__main__":
    sys.exit(main())
