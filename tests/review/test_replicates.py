"""hpo replicate and the report's replicate statistics."""

from __future__ import annotations

import json

from tests.conftest import hpo_here
from tests.review.conftest import study_in


def test_replicate_gives_mean_and_ci_per_configuration(replicated: tuple) -> None:
    finished, result = replicated
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.lstrip().startswith("Replicates (mean +/- 95% CI)")
    # Progress counts against the study's budget (8), replicates apart; the last line once.
    progress = [line for line in result.stderr.splitlines() if "finished:" in line]
    assert progress and all("/8 finished" in line or "(budget 8)" in line for line in progress)
    assert "4 replicates done" in progress[-1]
    assert all(a != b for a, b in zip(progress, progress[1:], strict=False))
    report = json.loads(hpo_here("report", "tiny", "--format", "json", cwd=finished).stdout)
    configs = report["replicates"]["configs"]
    assert len(configs) == 2 and all(c["n"] == 2 for c in configs)
    assert all(c["val_ci95"] is not None and c["test_mean"] is not None for c in configs)
    # Welch's t-test on the two best configurations' stored values, by scipy directly.
    from scipy import stats

    values = {c["trial_number"]: [t.value for t in study_in(finished).get_trials()
                                  if t.user_attrs.get("replicate_of") == c["trial_number"]]
              for c in configs}
    first, second = (values[c["trial_number"]] for c in configs)
    assert sum(first) / 2 >= sum(second) / 2  # the leader is listed first
    p = stats.ttest_ind(first, second, equal_var=False).pvalue
    assert report["replicates"]["leader_separated"] is bool(p == p and p < 0.05)
    reps = [t for t in study_in(finished).get_trials() if "replicate_of" in t.user_attrs]
    assert all("test_accuracy" in t.user_attrs for t in reps)
    # hpo status and the report count the same way: replicates apart, states by one name.
    status = hpo_here("status", cwd=finished).stdout.splitlines()
    header = status[0].split()
    row = next(line.split() for line in status if line.startswith("tiny "))
    counts = dict(zip(header[2:9], map(int, row[2:9]), strict=True))
    assert counts == {k: report["n_trials"][k] for k in ("complete", "pruned", "paused",
                                                        "failed", "running", "waiting",
                                                        "replicates")}
    text = hpo_here("report", "tiny", cwd=finished).stdout
    assert "True" not in text and "False" not in text  # booleans read yes/no everywhere
    assert {t.user_attrs["config"]["seed"] for t in reps} == {1000, 1001}
