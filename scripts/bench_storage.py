"""Storage throughput: trials/s and storage overhead per trial, direct PostgreSQL vs gRPC proxy.

Runs W worker processes, each finishing T trials of an objective that does no work (3
intermediate reports), once against PostgreSQL directly (with heartbeats, as hpo workers run)
and once through ``hpo proxy``, in the same run. Overhead per trial = wall time x workers /
trials: the seconds a worker spends on storage for each trial. Figures on the last line.

    .venv/bin/python scripts/bench_storage.py [--storage URL] [--workers 8] [--trials 25]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
import uuid

import optuna

from hpo.storage._backends import open_storage
from hpo.storage._lineage import Liveness


def _worker(url: str, name: str, trials: int, liveness: bool, ready, go) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, Liveness(30, 90, 1) if liveness else None)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    ready.release()
    go.wait()

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        for step in range(3):
            trial.report(x * step, step)
        return x * x

    study.optimize(objective, n_trials=trials)


def measure(url: str, workers: int, trials: int, liveness: bool) -> tuple[float, float]:
    """(trials per second, storage seconds per trial) for one storage."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, name, trials, liveness, ready, go))
             for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:  # interpreter start-up and connecting are not per-trial storage work
        ready.acquire()
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    done = len(optuna.load_study(study_name=name, storage=open_storage(url)).trials)
    optuna.delete_study(study_name=name, storage=open_storage(url))
    return done / wall, wall * workers / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=25, help="trials per worker")
    parser.add_argument("--port", type=int, default=13917)
    args = parser.parse_args()

    direct = measure(args.storage, args.workers, args.trials, liveness=True)
    print(f"direct PostgreSQL: {direct[0]:.1f} trials/s, {direct[1] * 1000:.0f} ms per trial")
    proxy = subprocess.Popen([sys.executable, "-m", "hpo", "proxy", "--storage", args.storage,
                              "--port", str(args.port)], stderr=subprocess.DEVNULL,
                             env={**os.environ})
    try:
        via = measure(f"grpc://127.0.0.1:{args.port}", args.workers, args.trials,
                      liveness=False)
    finally:
        proxy.terminate()
        proxy.wait()
    print(f"gRPC proxy:        {via[0]:.1f} trials/s, {via[1] * 1000:.0f} ms per trial")
    print(f"workers={args.workers} trials={args.workers * args.trials} "
          f"direct_trials_per_s={direct[0]:.2f} direct_overhead_ms={direct[1] * 1000:.1f} "
          f"proxy_trials_per_s={via[0]:.2f} proxy_overhead_ms={via[1] * 1000:.1f} "
          f"proxy_over_direct={via[0] / direct[0]:.2f}")


if __name__ == "__main__":
    main()
