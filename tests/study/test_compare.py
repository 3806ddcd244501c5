"""Head-to-head studies end to end: equal budgets per level with three worker processes on
PostgreSQL and on the journal file, finalists that alone read the test split, the report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import jsonschema
import optuna
import pytest
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here, write_spec

LEVELS = ["sgd", "adam", "rmsprop"]
SEARCH = f"""
optimizer = {json.dumps(LEVELS)}
schedule = ["cosine", "step"]
"""
COMPARE = """
[compare]
axis = "optimizer"
budget = 3
seeds = 2
"""


def _spec(tmp: Path, **replace: str) -> Path:
    spec = write_spec(tmp, n_trials=1, epochs=2, search=SEARCH, name="h2h.toml")
    text = spec.read_text().replace("n_trials = 1\n", "") + COMPARE
    for old, new in replace.items():
        text = text.replace(old, new)
    spec.write_text(text)
    return spec


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_every_level_gets_the_same_budget_and_its_finalists(backend: str, tmp_path: Path,
                                                            pg_url: str, study_name: str) -> None:
    url = str(tmp_path / "s.journal") if backend == "journal" else pg_url
    result = hpo_here("launch", str(_spec(tmp_path)), "--storage", url, "--study-name",
                      study_name, "--workers", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name=study_name, storage=open_storage(url)).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    searched = [t for t in trials if not record.is_replicate(t)
                and record.SURPLUS not in t.user_attrs]
    continued = record.retried_numbers(searched)
    finished = Counter(t.params["optimizer"] for t in searched
                       if t.state in record.FINISHED and t.number not in continued)
    assert finished == {level: 3 for level in LEVELS}
    for t in trials:  # a trial no slot fixed ends untrained and counts for no level
        if record.SURPLUS in t.user_attrs:
            assert t.state == TrialState.FAIL and not t.intermediate_values
    # the finalists: each level's best complete trial, retrained with 2 new seeds; they alone
    # read the test split
    finalists = [t for t in trials if record.is_replicate(t) and t.state == TrialState.COMPLETE
                 and record.DUPLICATE_OF not in t.user_attrs]
    by_original = Counter(t.user_attrs[record.REPLICATE_OF] for t in finalists)
    for level in LEVELS:
        mine = [t for t in searched if t.params["optimizer"] == level
                and t.state == TrialState.COMPLETE]
        if mine:
            best = max(mine, key=lambda t: t.value)
            assert by_original[best.number] == 2, (level, by_original)
    assert sum(by_original.values()) == 2 * len(by_original)
    assert all(record.TEST_ACCURACY in t.user_attrs for t in finalists)
    assert not [t for t in searched if record.TEST_ACCURACY in t.user_attrs]

    report = hpo_here("report", study_name, "--storage", url, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    jsonschema.validate(document, json.loads(
        (REPO / "hpo" / "review" / "report.schema.json").read_text()))
    h2h = document["head_to_head"]
    assert h2h["state"] == "done" and h2h["compared_by"] == "test accuracy"
    assert [r["level"] for r in h2h["levels"]] == LEVELS
    assert all(r["trials"] == 3 for r in h2h["levels"])
    assert [x["n"] for x in h2h["levels"][0]["expected_best"]] == [1, 2, 3]
    with_finalists = [r for r in h2h["levels"] if r["finalist"]]
    assert len(h2h["pairs"]) == len(with_finalists) * (len(with_finalists) - 1) // 2
    text = hpo_here("report", study_name, "--storage", url, cwd=tmp_path).stdout
    assert text.startswith("Verdict: Head-to-head on optimizer, 3 trials per level, best of "
                           "each retrained with 2 seeds (test accuracy): ")


@pytest.mark.parametrize("replace, message", [
    ({'axis = "optimizer"': 'axis = "init"'},
     "compare.axis: 'init' is not a choice of two or more levels in [search]; allowed: "
     "optimizer, schedule"),
    ({'name = "tiny"': 'name = "tiny"\nn_trials = 5'},
     "study.n_trials: is 5, but [compare] gives 3 trials to each of 3 levels (9)"),
    ({"budget = 3": "budget = 0"}, "compare.budget: must be >= 1"),
    ({"seeds = 2": "seeds = 1"}, "compare.seeds: must be >= 2"),
    ({"axis = ": "axes = "}, "compare.axes: unknown key; allowed: axis, budget, seeds"),
])
def test_a_wrong_compare_section_is_one_line_and_exit_2(tmp_path: Path, replace: dict,
                                                        message: str) -> None:
    result = hpo_here("create", str(_spec(tmp_path, **replace)), "--storage",
                      str(tmp_path / "s.journal"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert not (tmp_path / "s.journal").exists()
