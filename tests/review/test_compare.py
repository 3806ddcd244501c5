"""hpo compare: studies side by side on the levels any of them tried."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import hpo_here, write_spec


def test_compare_aligns_studies_on_shared_levels(finished: Path) -> None:
    spec = write_spec(finished, n_trials=2, epochs=1, name="other.toml",
                      search='optimizer = ["nadam"]\n')
    assert hpo_here("launch", str(spec), "--study-name", "other", cwd=finished).returncode == 0
    result = hpo_here("compare", "tiny", "other", cwd=finished)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert rows["nadam"].split()[1] == "-"  # tiny never tried nadam
