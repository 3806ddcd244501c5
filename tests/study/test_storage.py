import time
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.errors import UserError
from hpo.storage._backends import DEFAULT_STORAGE, open_storage, redact, resolve_url
from hpo.storage._rdb import IDLE_TRANSACTION_S
from tests.conftest import write_spec


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql://hpo:s3cret@db:5432/hpo") == "postgresql://hpo:***@db:5432/hpo"
    assert redact("postgresql://hpo@db/hpo") == "postgresql://hpo@db/hpo"
    assert redact("hpo.journal") == "hpo.journal"


def test_default_storage_is_a_journal_file_in_the_working_directory(monkeypatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert resolve_url(None) == DEFAULT_STORAGE == "hpo.journal"
    monkeypatch.setenv("HPO_STORAGE", "postgresql://x@y/z")
    assert resolve_url(None) == "postgresql://x@y/z"
    assert resolve_url("other.journal") == "other.journal"


def test_missing_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="directory .* does not exist"):
        open_storage(str(tmp_path / "no" / "s.journal"))


def test_wrong_password_never_shows_the_password(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path)
    url = "postgresql://nobody:hunter2@127.0.0.1:1/test"  # nothing listens on port 1
    assert main(["launch", str(spec), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "hunter2" not in err
    assert "postgresql://nobody:***@127.0.0.1:1/test: cannot open" in err
    assert "Connection refused" in err or "connection" in err.lower()


def test_bare_postgresql_urls_use_psycopg2() -> None:
    from hpo.storage._backends import driver_url

    assert driver_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert driver_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


def test_postgres_storage_opens(pg_url: str) -> None:
    import optuna

    storage = open_storage(pg_url)
    assert isinstance(storage, optuna.storages.RDBStorage)


def test_a_database_pools_fork_server_preloads_all_that_opening_the_storage_imports(
        pg_url: str) -> None:
    """A worker forked from the server of a pool on PostgreSQL opens its storage (as a worker
    does: tables and schema already checked, heartbeats on) and imports nothing more from
    SQLAlchemy, Alembic, Optuna's RDB storage or the driver: each worker paid about 0.9 s of
    CPU for those imports before they were preloaded. A fresh interpreter, so that what this
    test process imported before does not count."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = f"""
import importlib, sys
import multiprocessing.forkserver as fs
from hpo.worker._pool import worker_context
from hpo.storage._backends import open_storage
from hpo.storage._lineage import Liveness
worker_context("hpo.journal")
journal = list(fs._forkserver._preload_modules)
worker_context({pg_url!r})
rdb = [m for m in fs._forkserver._preload_modules if m not in journal]
assert rdb, "a database pool preloads nothing more than a journal file's"
for name in rdb:
    importlib.import_module(name)
before = set(sys.modules)
storage = open_storage({pg_url!r}, Liveness(heartbeat_interval=1, grace_period=4),
                       checked=True)
storage.get_all_studies()
roots = ("sqlalchemy", "alembic", "mako", "pygments", "psycopg2", "optuna.storages._rdb")
print(sorted(m for m in set(sys.modules) - before if m.startswith(roots)))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.timeout(90, method="thread")  # a signal cannot interrupt the driver's wait
def test_a_frozen_workers_open_transaction_stalls_the_others_for_seconds_not_forever(
        pg_url: str, study_name: str, monkeypatch) -> None:
    """A worker stopped inside a write (SIGSTOP, a swapped-out VM, a network split) holds the
    trial's row lock; the next worker's stale-trial check must fail that trial, and waited on
    the lock forever (CI: a 600 s hang) until the server ended such transactions."""
    import optuna
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    from hpo.storage import _rdb

    assert IDLE_TRANSACTION_S == 10  # the README's figure; a shorter bound keeps the test short
    monkeypatch.setattr(_rdb, "IDLE_TRANSACTION_S", 2.0)
    frozen, other = open_storage(pg_url), open_storage(pg_url)
    study = optuna.create_study(study_name=study_name, storage=frozen)
    try:
        trial_id = study.ask()._trial_id  # noqa: SLF001
        conn = frozen.engine.connect()
        lock = sqlalchemy.select(models.TrialModel).where(
            models.TrialModel.trial_id == trial_id).with_for_update()
        conn.execute(lock)  # what set_user_attr does first; then the process freezes
        started = time.monotonic()
        other.set_trial_state_values(trial_id, TrialState.FAIL)
        waited = time.monotonic() - started
        assert 1.5 < waited < 2.0 + 5, waited  # the bound released the lock, nothing else
        assert other.get_trial(trial_id).state == TrialState.FAIL
        # The frozen process, once it runs again, finds its connection gone (an error that
        # storage calls retry), and its next write to the failed trial is refused.
        with pytest.raises(sqlalchemy.exc.OperationalError):
            conn.execute(sqlalchemy.select(1))
        conn.invalidate()
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            frozen.set_trial_user_attr(trial_id, "late", 1)
    finally:
        optuna.delete_study(study_name=study_name, storage=other)


@pytest.mark.timeout(90, method="thread")
def test_a_result_told_after_another_worker_failed_the_trial_is_dropped_in_one_line(
        pg_url: str, study_name: str, caplog) -> None:
    """The race behind the frozen worker: its trial is declared stale between Optuna's check
    that the trial still runs and the write of its result. Optuna's tell cannot take the
    storage's error there (``assert False, "Should not reach."``); the worker died with a
    traceback. The other worker's write is held until the told result waits on it."""
    import threading

    import optuna
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    late = open_storage(pg_url)
    study = optuna.create_study(study_name=study_name, storage=late)
    other = sqlalchemy.create_engine(late.url)
    locked = threading.Event()

    def declare_stale(trial_id: int) -> None:
        row = models.TrialModel.trial_id == trial_id
        waiting = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
        with other.begin() as conn:
            conn.execute(sqlalchemy.select(models.TrialModel).where(row).with_for_update())
            locked.set()
            while not conn.execute(waiting).scalar():  # until the result's write waits on us
                time.sleep(0.01)
            conn.execute(sqlalchemy.update(models.TrialModel).where(row)
                         .values(state=TrialState.FAIL))

    def objective(trial: optuna.Trial) -> float:
        threading.Thread(target=declare_stale, args=(trial._trial_id,)).start()  # noqa: SLF001
        locked.wait()
        return 0.5

    try:
        with caplog.at_level("WARNING", logger="hpo.storage"):
            study.optimize(objective, n_trials=1)
        (trial,) = study.get_trials()
        assert trial.state == TrialState.FAIL and trial.value is None
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert dropped == [
            "a late result was dropped: its trial was declared stale by another worker and "
            "retried meanwhile (trial 0 is FAIL)"], caplog.text
    finally:
        other.dispose()
        optuna.delete_study(study_name=study_name, storage=late)


def test_every_connection_of_a_database_storage_carries_the_bound_also_after_pickling(
        pg_url: str) -> None:
    """The bound is set on each new connection; the connections opened while Optuna checked the
    schema (before it could be) are replaced, and a storage sent to another process (pickled,
    as Optuna's storages may be) sets it too."""
    import pickle

    import sqlalchemy

    show = sqlalchemy.text("SHOW idle_in_transaction_session_timeout")
    fresh = open_storage(pg_url)
    for storage in (fresh, pickle.loads(pickle.dumps(fresh))):
        with storage.engine.connect() as a, storage.engine.connect() as b:  # the pool and overflow
            assert a.execute(show).scalar() == b.execute(show).scalar() == "10s"
