"""Where studies live: the embedded default file, PostgreSQL (or any Optuna URL), a gRPC proxy.

The default is a journal file, ``hpo.journal`` in the working directory: Optuna's
``JournalFileBackend`` appends under a file lock, so several local processes share it without
the "database is locked" errors of SQLite, and ``optuna-dashboard hpo.journal`` and the
``optuna`` CLI read it as is. A value containing ``://`` is a URL: ``grpc://host:port`` for
``hpo proxy``, ``redis://`` for Optuna's Redis journal, anything else (``postgresql://``,
``sqlite:///``, ``mysql://``) for RDBStorage.

RDB storages are opened as :class:`hpo.storage._rdb.ResilientRDBStorage`: a small bounded
connection pool with pre-ping and recycling, and every call retried with backoff while the
database is restarting or unreachable, so a database restart pauses workers instead of killing
them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import optuna

from hpo.errors import UserError
from hpo.storage._lineage import Liveness
from hpo.storage._rdb import MAX_OVERFLOW, POOL_SIZE, ResilientRDBStorage

DEFAULT_STORAGE = "hpo.journal"
ENV_VAR = "HPO_STORAGE"


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
    :data:`hpo.storage._rdb.CONNECTIONS_PER_PROCESS` connections while its workers run."""
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
