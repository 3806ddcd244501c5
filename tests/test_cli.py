"""The command line itself: version, help that states its defaults, one budget per command."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo import __version__
from tests.conftest import run_hpo


def test_version(tmp_path: Path) -> None:
    result = run_hpo("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"hpo {__version__}"


@pytest.mark.parametrize("command,defaults", [
    ("report", ["--top TOP", "(default: 5)", "--format", "(default: text)"]),
    ("replicate", ["(default: 3)", "new seeds per configuration (default: 3)"]),
    ("export", ["(default: 1)", "(default: yaml)", "(default: exports)"]),
    ("dashboard", ["(default: 8080)", "(default: 127.0.0.1, this machine only)"]),
])
def test_help_states_the_defaults(tmp_path: Path, command: str, defaults: list[str]) -> None:
    text = " ".join(run_hpo(command, "--help", cwd=tmp_path).stdout.split())
    for words in defaults:
        assert words in text, (command, words)


def test_replicate_has_no_budget_option(tmp_path: Path) -> None:
    """Its workers only run the queued replicates: a trial budget would mean nothing there."""
    assert "--n-trials" not in run_hpo("replicate", "--help", cwd=tmp_path).stdout
    assert "--n-trials" in run_hpo("worker", "--help", cwd=tmp_path).stdout


@pytest.mark.parametrize("command", [
    ["launch", "FILE"], ["train", "FILE"], ["status", "--storage", "FILE"],
    ["report", "tiny", "--storage", "FILE"],
])
def test_random_bytes_as_a_spec_an_export_or_a_journal_are_one_line_and_exit_2(
        tmp_path, command) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(range(256)) * 8)
    result = run_hpo(*[str(bad) if c == "FILE" else c for c in command], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert str(bad) in line and "Traceback" not in result.stderr
