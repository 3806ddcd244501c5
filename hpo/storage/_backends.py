"""Where studies live: the embedded default file, PostgreSQL (or any Optuna URL), a gRPC proxy.

The default is a journal file, ``hpo.journal`` in the working directory: Optuna's
``JournalFileBackend`` appends under a file lock, so several local processes share it without
the "database is locked" errors of SQLite, and ``optuna-dashboard hpo.journal`` and the
``optuna`` CLI read it as is. A value containing ``://`` is a URL: ``grpc://host:port`` for
``hpo proxy``, ``redis://`` for Optuna's Redis journal, anything else (``postgresql://``,
``sqlite:///``, ``mysql://``) for RDBStorage.

RDB storages are opened as :class:`ResilientRDBStorage`: a small bounded connection pool
with pre-ping and recycling, and every call retried with backoff while the database is
restarting or unreachable, so a database restart pauses workers instead of killing them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.trial import TrialState

from hpo import record
from hpo.errors import UserError
from hpo.storage._lineage import Liveness, RetryStale, retry

DEFAULT_STORAGE = "hpo.journal"
ENV_VAR = "HPO_STORAGE"
# Each worker process holds at most POOL_SIZE + MAX_OVERFLOW connections: one for the trial
# loop, one for the heartbeat thread. N processes need 2N connections (plus 2 for a launcher).
POOL_SIZE, MAX_OVERFLOW = 1, 1
CONNECTIONS_PER_PROCESS = POOL_SIZE + MAX_OVERFLOW
# How long a storage call keeps retrying a lost database before giving up, in seconds.
RETRY_FOR_S = float(os.environ.get("HPO_DB_RETRY_S", "600"))
# A transaction left idle this long is ended by PostgreSQL (idle_in_transaction_session_timeout):
# a worker frozen inside a write (SIGSTOP, a swapped-out VM, a network split) holds its trial's
# row lock, which every other worker's stale-trial check waits on; without a bound, forever.
# Optuna's transactions last milliseconds, so only a frozen process ever reaches it.
IDLE_TRANSACTION_S = 10.0

# What a worker says when another worker failed its trial for silence before it could tell
# the result (it was frozen, swapped out or cut off): the result is not stored.
LATE_RESULT_DROPPED = ("a late result was dropped: its trial was declared stale by another "
                       "worker and retried meanwhile")

_log = logging.getLogger("hpo.storage")
T = TypeVar("T")


def resolve_url(given: str | None) -> str:
    """``--storage``, else ``$HPO_STORAGE``, else the embedded default file."""
    return given or os.environ.get(ENV_VAR) or DEFAULT_STORAGE


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs, reports and exports."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _password(url: str) -> str:
    if "://" not in url or "@" not in url:
        return ""
    return url.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2]


def driver_url(url: str) -> str:
    """``postgresql://`` pinned to psycopg2, the driver hpo ships.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed; and
    pg8000 breaks past 32767 trials, so the driver is chosen here rather than left to chance.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _transient(error: BaseException) -> bool:
    """Whether ``error`` means "the database is away for now" rather than a real failure."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError |
                      sqlalchemy.exc.DisconnectionError):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(name: str, method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> T:
        delay, deadline, attempt = 0.5, time.monotonic() + RETRY_FOR_S, 0
        while True:
            try:
                return method(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                settled = (_finished_meanwhile(self, args, kwargs, retried=attempt > 0)
                           if name == "set_trial_state_values" else None)
                if settled is None:
                    raise
                return settled  # type: ignore[return-value]
            except Exception as e:
                if not _transient(e) or time.monotonic() > deadline:
                    raise
                attempt += 1
                _log.warning("storage unreachable (%s); retry %d of %s in %.1f s",
                             type(e).__name__, attempt, name, delay)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    return call


def _finished_meanwhile(storage: ResilientRDBStorage, args: tuple[Any, ...],
                       kwargs: dict[str, Any], retried: bool) -> bool | None:
    """What ``set_trial_state_values`` returns for a trial that another write has finished.

    A retried write whose first attempt did commit before its reply was lost: True, done. A
    result (complete or pruned) of a trial that another worker declared stale meanwhile (this
    one was frozen, or slow, between Optuna's check and its write): dropped with one line, and
    False ("not updated", as for a lost claim), since Optuna's tell cannot take this error and
    would stop the worker with an assertion. None for anything else (two workers failing one
    stale trial): the error is raised, for the caller to decide.
    """
    wanted = kwargs.get("state", args[1] if len(args) > 1 else None)
    stored = storage.get_trial(args[0])
    if retried and stored.state == wanted:
        return True
    if wanted in (TrialState.COMPLETE, TrialState.PRUNED) and stored.state == TrialState.FAIL:
        _log.warning("%s (trial %d is FAIL)", LATE_RESULT_DROPPED, stored.number)
        return False
    return None


ORPHAN_REASON = ("orphaned: its creation was stored but the reply was lost with the "
                 "connection, so no worker ever ran it")
# A claimed retry or replicate whose worker died (or lost the reply) before its first heartbeat:
# it has a chain (and checkpoints) behind it, so it is queued again rather than just failed.
CLAIMED_ORPHAN_REASON = ("orphaned: claimed by a worker that never sent a heartbeat (it died "
                         "or lost the reply)")


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """RDBStorage whose every call survives a database restart or a dropped connection.

    Connection errors are retried with exponential backoff (0.5 s doubling to 15 s) for up to
    ``HPO_DB_RETRY_S`` seconds (default 600); pre-ping replaces connections the server closed.
    A finished trial's result is therefore stored once the database is back, never lost.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heartless_since: dict[int, float] = {}
        self._bound_idle_transactions()

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._bound_idle_transactions()

    def _bound_idle_transactions(self) -> None:
        """Has the server end this storage's transactions once idle for ``IDLE_TRANSACTION_S``.

        A frozen process finds its connection closed when it runs again: an error its storage
        calls retry like a restart's, so the write is made again or, if its trial was failed
        meanwhile, refused. Set per connection rather than in the URL's ``options``, which
        poolers such as PgBouncer refuse and which a user's own ``options`` would replace.
        """
        if self.engine.dialect.name != "postgresql":
            return
        setting = f"SET idle_in_transaction_session_timeout = {int(IDLE_TRANSACTION_S * 1000)}"

        def bound(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(setting)
            dbapi_connection.commit()

        sqlalchemy.event.listen(self.engine, "connect", bound)
        self.engine.dispose()  # the connections that checked the schema were made without it

    def annotate_finished(self, trial_id: int, key: str, value: Any) -> None:
        """Sets a user attribute of a trial even when it has finished.

        Optuna refuses every write to a finished trial; the one exception hpo makes is the
        reason of a trial that Optuna's heartbeat check failed while its run was silent.
        """
        from optuna.storages._rdb import models

        table = models.TrialUserAttributeModel
        text = json.dumps(value)
        with self.engine.begin() as conn:
            where = (table.trial_id == trial_id) & (table.key == key)
            if conn.execute(sqlalchemy.update(table).where(where)
                            .values(value_json=text)).rowcount == 0:
                conn.execute(sqlalchemy.insert(table).values(trial_id=trial_id, key=key,
                                                             value_json=text))

    def _heartless_running(self, study_id: int) -> list[int]:
        """RUNNING trials of the study that have never recorded a heartbeat."""
        from optuna.storages._rdb import models

        with self.engine.connect() as conn:
            query = sqlalchemy.select(models.TrialModel.trial_id).where(
                models.TrialModel.study_id == study_id,
                models.TrialModel.state == TrialState.RUNNING,
                ~sqlalchemy.exists().where(
                    models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id),
            )
            return [row[0] for row in conn.execute(query)]

    def fail_orphans(self, study_id: int) -> list[int]:
        """Fails the RUNNING trials that have had no heartbeat for a whole grace period.

        Optuna's stale-trial check skips trials without a heartbeat row, and a worker records
        one as soon as it has created a trial. A trial without one is a trial whose creation
        committed while the reply was lost with the connection (the retried call made another
        trial): no process runs it, and left alone it would stay RUNNING forever and make every
        worker wait for it at the end of the study. Ages are taken from this process's
        monotonic clock, over repeated calls, so other machines' clocks do not matter.

        Returns:
            The ids of the trials failed by this call.
        """
        if self.heartbeat_interval is None:
            return []
        grace = self.grace_period or 2 * self.heartbeat_interval
        now, seen = time.monotonic(), self._heartless_since
        current = set(self._heartless_running(study_id))
        for trial_id in set(seen) - current:
            del seen[trial_id]
        failed = []
        for trial_id in sorted(current):
            if now - seen.setdefault(trial_id, now) < grace:
                continue
            del seen[trial_id]
            trial = self.get_trial(trial_id)
            # A retry or a replicate that a worker popped from the queue and never started:
            # its chain must go on. A plain lost creation never trained: failing it is enough.
            claimed = bool(record.retry_history(trial)) or record.is_replicate(trial)
            reason = CLAIMED_ORPHAN_REASON if claimed else ORPHAN_REASON
            try:
                self.set_trial_user_attr(trial_id, record.STOP_REASON, reason)
                self.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it was not an orphan after all, or another worker failed it first
            then = "failed it"
            callback = self.get_heartbeat_stale_trial_callback()
            if claimed and isinstance(callback, RetryStale):
                number = retry(self, study_id, self.get_trial(trial_id), callback.liveness)
                then = (f"queued to resume as trial {number}" if number is not None
                        else "not retried: its retries are spent")
                self.annotate_finished(trial_id, record.STOP_REASON, f"{reason}; {then}")
            _log.warning("trial %d %s; %s", trial.number, reason, then)
            failed.append(trial_id)
        return failed


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
    # what Optuna's _CachedStorage (the wrapper every Study puts around an RDBStorage) calls:
    "_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param",
    "_heartless_running", "annotate_finished",
):
    setattr(ResilientRDBStorage, _name, _retrying(_name, getattr(ResilientRDBStorage, _name)))


def is_database(url: str) -> bool:
    """Whether ``url`` names an RDB storage: a URL, not a gRPC proxy's nor a Redis journal's."""
    return "://" in url and not url.startswith(("grpc://", "redis"))


def open_storage(url: str, liveness: Liveness | None = None, *, must_exist: bool = False,
                 checked: bool = False) -> optuna.storages.BaseStorage:
    """Opens (creating if needed) the storage at ``url``; a bad URL is a one-line UserError.

    Args:
        url: journal file path or storage URL.
        liveness: heartbeat settings; only RDB storages support them, others ignore them.
        must_exist: the commands that only read (status, report, export, dashboard, ...)
            refuse a journal file that does not exist instead of creating an empty one, so a
            mistyped path says so.
        checked: a database's tables and schema version were created and checked already, by
            the command that started this worker: Optuna's checks (several round trips and
            queries) are skipped.
    """
    shown = redact(url)
    if "://" not in url:
        path = Path(url)
        if path.is_dir():
            raise UserError(f"storage {shown}: is a directory; give a file path or a URL")
        if must_exist and not path.exists():
            raise UserError(f"storage {shown}: no such file; give the journal file a study "
                            f"was run with (--storage or ${ENV_VAR}; default {DEFAULT_STORAGE})")
        if not path.parent.is_dir():
            raise UserError(f"storage {shown}: directory {path.parent} does not exist")
        try:
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        except OSError as e:
            raise UserError(f"storage {shown}: cannot open: {e.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSON/UTF-8 errors too
            raise UserError(f"storage {shown}: {damaged_line(path)}; 'hpo repair --storage "
                            f"{shown}' keeps a backup and recovers the rest "
                            f"({type(e).__name__})") from None
    if url.startswith("grpc://"):
        host, _, port = url[len("grpc://"):].rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"storage {shown}: expected grpc://HOST:PORT")
        return _grpc_proxy(host, int(port), shown)
    if not is_database(url):  # redis
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(("postgres", "mysql")):
        # Optuna sets pool_pre_ping only for MySQL; dropped connections must not kill workers.
        engine_kwargs = {"pool_pre_ping": True, "pool_recycle": 3600, "pool_size": POOL_SIZE,
                         "max_overflow": MAX_OVERFLOW, "pool_timeout": 60}
    heartbeat: dict[str, Any] = {}
    if liveness is not None:
        heartbeat = {"heartbeat_interval": liveness.heartbeat_interval,
                     "grace_period": liveness.grace_period,
                     "heartbeat_stale_trial_callback": liveness.retry_callback()}
    try:
        storage = ResilientRDBStorage(driver_url(url), engine_kwargs=engine_kwargs,
                                      skip_table_creation=checked,
                                      skip_compatibility_check=checked, **heartbeat)
        if liveness is not None:
            heartbeat["heartbeat_stale_trial_callback"].storage = storage
        return storage
    except Exception as e:  # sqlalchemy raises many types; to the user each means "cannot open"
        cause = e.__cause__ or e
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(e).__name__
        if _password(url):
            message = message.replace(_password(url), "***")
        raise UserError(f"storage {shown}: cannot open: {message}") from None


def release(storage: optuna.storages.BaseStorage) -> None:
    """Closes a database storage's pooled connections (a later call opens one again); other
    storages hold none. A process that opens a second storage (the workers' one with
    heartbeats, the pool's own) releases the first, so that it holds at most
    :data:`CONNECTIONS_PER_PROCESS` connections while its workers run."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()


def damaged_line(path: Path) -> str:
    """Where a journal file stops being a journal: its first line that is not a JSON object."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                if not isinstance(json.loads(raw.decode("utf-8")), dict):
                    raise ValueError
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                return f"not a readable journal: line {number} is damaged"
    return "not a readable journal (its records do not replay)"


def _grpc_proxy(host: str, port: int, shown: str) -> optuna.storages.BaseStorage:
    import warnings

    import grpc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=10)
    except (grpc.FutureTimeoutError, grpc.RpcError) as e:
        raise UserError(f"storage {shown}: no hpo proxy answers there ({type(e).__name__})"
                        ) from None
    return proxy


def find_study(storage: optuna.storages.BaseStorage, storage_url: str, study_name: str
               ) -> optuna.Study:
    """The study ``study_name``; an unknown name is a one-line error listing the studies."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(
            f"storage {redact(storage_url)}: no study named {study_name!r}; "
            f"studies there: {', '.join(names) or 'none'}"
        ) from None


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and \
        storage.get_heartbeat_interval() is not None


def run_proxy(url: str, host: str, port: int) -> None:
    """Serves the storage at ``url`` over gRPC until interrupted (Optuna's storage proxy).

    Hundreds of workers then share the proxy's few database connections. The proxy has no
    heartbeat: stale trials are not detected behind it.
    """
    storage = open_storage(url)
    try:
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
    except KeyboardInterrupt:
        pass
