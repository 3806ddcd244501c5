from pathlib import Path

import pytest

from hpo.cli import main
from hpo.errors import UserError
from hpo.storage._backends import DEFAULT_STORAGE, open_storage, redact, resolve_url
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
