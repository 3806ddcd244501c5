"""A journal with a damaged line: every command says where, and hpo repair recovers the rest."""

from __future__ import annotations

import optuna

from hpo.storage._backends import open_storage
from tests.conftest import hpo_here, write_spec


def test_a_damaged_journal_is_named_and_repair_recovers_the_rest(tmp_path) -> None:
    journal = tmp_path / "s.journal"
    done = hpo_here("launch", str(write_spec(tmp_path, n_trials=3, epochs=1)), "--storage",
                    str(journal), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    before = optuna.load_study(study_name="tiny", storage=open_storage(str(journal))).trials
    lines = journal.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    # a torn write in the middle: half a record, then bytes that are not UTF-8
    lines[middle] = lines[middle][: len(lines[middle]) // 2] + b"\xff\xfe\n"
    journal.write_bytes(b"".join(lines))
    original = journal.read_bytes()

    for command in (["status"], ["report", "tiny"]):
        result = hpo_here(*command, "--storage", str(journal), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"line {middle + 1} is damaged" in line and "hpo repair" in line

    repaired = hpo_here("repair", "--storage", str(journal), cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert f"dropped 1 damaged line(s) ({middle + 1})" in repaired.stdout
    (backup,) = tmp_path.glob("s.journal.*.bak")
    assert backup.read_bytes() == original  # byte for byte
    after = optuna.load_study(study_name="tiny", storage=open_storage(str(journal))).trials
    assert len(after) == len(before)
    intact = sum(a.params == b.params and a.state == b.state for a, b in
                 zip(after, before, strict=True))
    assert intact >= len(before) - 1  # at most the trial whose record was torn differs
    status = hpo_here("status", "--storage", str(journal), cwd=tmp_path)
    assert status.returncode == 0 and "tiny" in status.stdout
