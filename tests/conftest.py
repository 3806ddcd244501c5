"""Shared fixtures: tiny specs that train in seconds, real storages (journal file, PostgreSQL)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import io
import multiprocessing.process
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import optuna

# Three test processes share the 2-core machine, and each runs workers or trains in-process: one
# OpenMP thread each, or their threads spin against each other (2.4x the CPU per epoch). Set
# before torch starts here, inherited by every command a test runs; the workers honour it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


@functools.cache
def _workers_output() -> Path:
    """Starts this test process's fork server, the one :func:`hpo_here`'s workers fork from,
    with its standard output and error going to a file of its own, and returns the file.

    A worker writes its messages to the streams its fork server started with; this way they
    reach the test that ran it (see :func:`hpo_here`), not pytest's capture of whichever test
    happened to start the server. Started by the product's own :func:`worker_context`, so the
    server preloads what the workers' server of a pool on PostgreSQL does (the tests' workers
    run on journal files and PostgreSQL alike)."""
    import multiprocessing.forkserver

    from hpo.worker._pool import worker_context

    assert multiprocessing.forkserver._forkserver._forkserver_pid is None, \
        "the test process's fork server started before hpo_here: its workers' output is lost"
    fd, name = tempfile.mkstemp(prefix="hpo-workers-", suffix=".log")
    atexit.register(os.unlink, name)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        worker_context(PG_URL)
        multiprocessing.forkserver.ensure_running()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
    return Path(name)


def hpo_here(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs :func:`hpo.cli.main` in this process: the command line's own code, without a new
    interpreter's start-up (about 3-5 s of CPU with torch). Commands that run workers (launch,
    worker, replicate) share this test process's fork server, started once with torch and
    optuna imported (about 11 s of CPU a command otherwise, on the 2-core machine); their
    workers' messages come after the command's own in ``stderr``, and their paths travel
    absolute. Bad input is refused here as by the real command (exit 2, one line; an
    exception would reach the test); a few tests run it through the real command too
    (``tests/study/test_spec_errors.py``, ``tests/test_cli.py``). Tests of the process itself
    (its signals, its environment) and runs that a test kills or watches while they run use
    :func:`run_hpo` or a process of their own."""
    from hpo.cli import main

    workers = _workers_output() if args[0] in ("launch", "worker", "replicate") else None
    seen = workers.stat().st_size if workers else 0
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's refusals
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(before)
    theirs = ""
    if workers:
        with workers.open(encoding="utf-8", errors="replace") as f:
            f.seek(seen)
            theirs = f.read()
    return subprocess.CompletedProcess(["hpo", *args], code, out.getvalue(),
                                       err.getvalue() + theirs)


@dataclass
class ForkedWorker:
    """One worker process of ``hpo worker``, forked from this test process's fork server."""

    process: multiprocessing.process.BaseProcess
    log: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait(self, timeout: float = 120) -> int:
        """Its exit status once it ended (a negative signal number when a signal ended it)."""
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"worker {self.pid} still runs"
        return self.process.exitcode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def fork_worker(tmp: Path, url: str, name: str) -> ForkedWorker:
    """A worker on study ``name``, as ``hpo worker --study NAME --storage URL --checkpoint-dir
    TMP/ckpt`` runs it: the pool's worker entry point (:func:`hpo.worker._entry.worker_main`)
    with the plan the command gives its one worker, in a process forked from the fork server
    that :func:`hpo_here`'s workers fork from.

    For tests that kill, stop or signal a worker while it trains: the process is the real
    worker, without the 7 s of CPU that a new ``hpo worker`` command costs on the 2-core
    machine (its interpreter, torch, its own fork server). Its messages go to a log of its own
    (:meth:`ForkedWorker.output`). Tests of the command's own process (its start-up, its pool,
    its exit status) run the real command (:func:`run_hpo`)."""
    from hpo.worker._plan import WorkerPlan
    from hpo.worker._pool import worker_context
    from hpo.worker._worker import default_threads
    from tests import _victim

    _workers_output()  # the server, started once with this process's preload
    plan = WorkerPlan(url, name, str((tmp / "ckpt").absolute()), threads=default_threads(1))
    log = tmp / f"worker-{uuid.uuid4().hex[:8]}.log"
    process = worker_context(PG_URL).Process(target=_victim.run, args=(plan, str(log)),
                                             name="hpo-worker-0")
    process.start()
    return ForkedWorker(process, log)


@functools.cache
def storage_at(url: str) -> optuna.storages.BaseStorage:
    """One storage per URL for this test process. Tests poll a study many times a second while
    workers run: through one storage a poll costs about 3 ms of CPU, through a new one (an
    engine, a connection, Optuna's schema check) about 60 ms, which the 2-core machine's other
    test process would otherwise lose to the polling."""
    from hpo.storage._backends import open_storage

    return open_storage(url)


# The modules whose tests run longest (real studies with several processes, Slurm, kills),
# handed out first so that the test processes end together, not one of them alone on a
# long test at the end.
LONGEST_FIRST = ("study/test_quickstart.py", "study/test_slurm.py", "review/",
                 "study/test_distributed.py", "study/test_fleet.py", "study/test_promotion.py")


def _rank(item: pytest.Item) -> int:
    where = Path(str(item.path)).relative_to(REPO / "tests").as_posix()
    return next((i for i, m in enumerate(LONGEST_FIRST) if where.startswith(m)),
                len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first (see :data:`LONGEST_FIRST`); the review tests in one test process, which
    then builds their finished study once (``--dist loadgroup``); tests marked ``cuda`` need a
    GPU: skipped, with the reason, where there is none."""
    import torch

    items.sort(key=_rank)  # stable: a module's tests stay together, in their order
    review = pytest.mark.xdist_group("review")
    for item in items:
        if Path(str(item.path)).is_relative_to(REPO / "tests" / "review"):
            item.add_marker(review)
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


@dataclass(frozen=True)
class OwnPostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), for
    tests that restart the server or count its connections, so that the shared server and the
    tests running beside them are left alone."""

    url: str
    _ctl: list[str]

    def restart(self) -> None:
        subprocess.run([*self._ctl, "-m", "fast", "restart"], check=True, timeout=60,
                       capture_output=True)


@pytest.fixture(scope="session")
def own_pg() -> Iterator[OwnPostgres]:
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="hpo-own-pg-"))
    folder.chmod(0o755)
    if as_owner:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True, timeout=120)
    ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
           "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c max_connections=200"]
    subprocess.run([*ctl, "start"], check=True, capture_output=True, timeout=60)
    try:
        yield OwnPostgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", ctl)
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
