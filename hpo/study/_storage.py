"""Where studies live: the embedded default file, or any Optuna storage URL.

The default is a journal file, ``hpo.journal`` in the working directory: Optuna's
``JournalFileBackend`` appends under a file lock, so several local processes share it without
the "database is locked" errors of SQLite, and ``optuna-dashboard hpo.journal`` and the
``optuna`` CLI read it as is. A value containing ``://`` is a URL: ``redis://`` for Optuna's
Redis journal, anything else (``postgresql://``, ``sqlite:///``, ``mysql://``) for RDBStorage.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from hpo.errors import UserError

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


def driver_url(url: str) -> str:
    """``postgresql://`` pinned to psycopg2, the driver hpo ships.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed; and
    pg8000 breaks past 32767 trials, so the driver is chosen here rather than left to chance.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Opens (creating if needed) the storage at ``url``; a bad URL is a one-line UserError."""
    shown = redact(url)
    if "://" not in url:
        path = Path(url)
        if path.is_dir():
            raise UserError(f"storage {shown}: is a directory; give a file path or a URL")
        if not path.parent.is_dir():
            raise UserError(f"storage {shown}: directory {path.parent} does not exist")
        try:
            backend = optuna.storages.journal.JournalFileBackend(str(path))
        except OSError as e:
            raise UserError(f"storage {shown}: cannot open: {e.strerror}") from None
        return optuna.storages.JournalStorage(backend)
    if url.startswith("redis"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    engine_kwargs = {}
    if url.startswith(("postgresql", "mysql")):
        # Optuna sets pool_pre_ping only for MySQL; dropped connections must not kill workers.
        engine_kwargs = {"pool_pre_ping": True, "pool_recycle": 3600, "pool_size": 2,
                         "max_overflow": 2}
    try:
        return optuna.storages.RDBStorage(driver_url(url), engine_kwargs=engine_kwargs)
    except Exception as e:  # sqlalchemy raises many types; to the user each means "cannot open"
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        password = url.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2] if "@" in url else ""
        if password:
            message = message.replace(password, "***")
        raise UserError(f"storage {shown}: cannot open: {message}") from None
