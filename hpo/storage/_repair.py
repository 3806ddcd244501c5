"""``hpo repair``: recover a journal file that has damaged lines.

A journal is one JSON record per line, replayed in order. A disk fault, or two hosts appending
over a network file system without working locks, can leave a line that is not a record; Optuna
then refuses the whole file. Repair keeps a byte-for-byte backup, drops every line that is not
a JSON record, checks that the rest replays, and names the trials whose records sat next to
the dropped lines (their history may miss one update: check them).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hpo.errors import UserError


def _trial_ids(record: dict) -> set[int]:
    return {int(record["trial_id"])} if isinstance(record.get("trial_id"), int) else set()


def repair_journal(path: Path) -> str:
    """Repairs ``path`` in place (backup beside it) and returns one line saying what it did."""
    if not path.is_file():
        raise UserError(f"storage {path}: no such file; repair works on a journal file")
    lines = path.read_bytes().splitlines(keepends=True)
    kept: list[bytes] = []
    dropped: list[int] = []
    near: set[int] = set()
    records: list[dict | None] = []
    for raw in lines:
        try:
            record = json.loads(raw.decode("utf-8"))
            records.append(record if isinstance(record, dict) else None)
        except ValueError:
            records.append(None)
    for i, (raw, record) in enumerate(zip(lines, records, strict=True)):
        if record is None:
            dropped.append(i + 1)
            for j in (i - 1, i + 1):
                if 0 <= j < len(records) and records[j] is not None:
                    near |= _trial_ids(records[j])  # type: ignore[arg-type]
            continue
        kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if not dropped:
        return f"{path}: every one of its {len(lines)} lines is a record; nothing to repair"
    backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    shutil.copy2(path, backup)
    path.write_bytes(b"".join(kept))
    from hpo.storage._backends import open_storage

    try:
        open_storage(str(path))
    except UserError as e:
        shutil.copy2(backup, path)
        raise UserError(f"storage {path}: still unreadable after dropping lines "
                        f"{_numbers(dropped)} ({e}); the file is restored from {backup}"
                        ) from None
    trials = f"; trials near them (ids {_numbers(sorted(near))}) may miss an update" \
        if near else ""
    return (f"{path}: dropped {len(dropped)} damaged line(s) ({_numbers(dropped)}), kept "
            f"{len(kept)} records; backup at {backup}{trials}")


def _numbers(values: list[int]) -> str:
    shown = ", ".join(map(str, values[:10]))
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")
