"""Warm start: earlier studies' finished trials seed a new study's sampler, where they fit."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.storage._backends import open_storage
from tests.conftest import DEFAULT_SEARCH, hpo_here, write_spec

NARROW = """
optimizer = "sgd"
schedule = ["cosine", "step"]
init = ["kaiming_normal", "xavier_uniform"]
"""


def _spec(tmp: Path, name: str, search: str, warm: list[str], n_trials: int = 3) -> Path:
    """A tiny spec; a warm-started one trains its own trials to the end (no pruner), since the
    median pruner, judging them against the warm-start trials, could otherwise prune them all."""
    spec = write_spec(tmp, n_trials=n_trials, epochs=2, search=search, name=f"{name}.toml")
    text = spec.read_text().replace('name = "tiny"', f'name = "{name}"\nwarm_start = {warm!r}'
                                    .replace("'", '"'))
    if warm:
        text = text.replace('name = "median"\nn_startup_trials = 2\nn_warmup_steps = 1',
                            'name = "none"')
    spec.write_text(text)
    return spec


def _first_study(tmp: Path, url: str) -> list[optuna.trial.FrozenTrial]:
    """Runs the earlier study; its finished trials."""
    first = hpo_here("launch", str(_spec(tmp, "first", DEFAULT_SEARCH, [], 6)),
                     "--storage", url, cwd=tmp)
    assert first.returncode == 0, first.stderr[-2000:]
    earlier = optuna.load_study(study_name="first", storage=open_storage(url))
    return [t for t in earlier.trials if t.state in record.FINISHED]


def test_a_warm_started_study_holds_the_earlier_trials_and_its_sampler_models_them(
        tmp_path) -> None:
    url = str(tmp_path / "s.journal")
    finished = _first_study(tmp_path, url)

    second = hpo_here("launch", str(_spec(tmp_path, "second", DEFAULT_SEARCH, ["first"])),
                      "--storage", url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    (line,) = [x for x in second.stderr.splitlines() if "warm start" in x]
    assert f"{len(finished)} of {len(finished)} finished trials" in line
    study = optuna.load_study(study_name="second", storage=open_storage(url))
    warm = [t for t in study.trials if record.is_warm(t)]
    assert sorted((str(t.params), t.state, t.value) for t in warm) == \
        sorted((str(t.params), t.state, t.value) for t in finished)
    assert {t.user_attrs[record.WARM_START] for t in warm} == \
        {f"first#{t.number}" for t in finished}
    # never counted against the budget: the study trained 3 trials of its own
    own = [t for t in study.trials if not record.is_warm(t) and t.state in record.FINISHED]
    assert 3 <= len(own) <= 4
    # the sampler models them: TPE past its startup count proposes from them, not at random
    complete = sum(t.state == TrialState.COMPLETE for t in warm)
    assert complete >= 2

    def first_proposal(target: optuna.Study) -> dict:
        sampler = optuna.samplers.TPESampler(seed=3, n_startup_trials=complete)
        trial = optuna.create_study(sampler=sampler, direction="maximize")
        trial.add_trials([t for t in target.trials if t.state == TrialState.COMPLETE])
        ask = trial.ask({k: v for k, v in warm[0].distributions.items()})
        return ask.params

    empty = optuna.create_study(direction="maximize")
    assert first_proposal(study) != first_proposal(empty)
    report = hpo_here("report", "second", "--storage", url, "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert '"warm_start": {\n    "first": ' + str(len(finished)) in report.stdout


def test_trials_outside_the_space_are_skipped_and_unknown_sources_refused(tmp_path) -> None:
    url = str(tmp_path / "s.journal")
    finished = _first_study(tmp_path, url)
    sgd = [t for t in finished if t.params["optimizer"] == "sgd"]

    narrow = hpo_here("create", str(_spec(tmp_path, "narrow", NARROW, ["first"])),
                      "--storage", url, cwd=tmp_path)
    assert narrow.returncode == 0, narrow.stderr
    (line,) = narrow.stderr.strip().splitlines()
    assert f"{len(sgd)} of {len(finished)} finished trials" in line
    assert f"{len(finished) - len(sgd)} skipped" in line
    study = optuna.load_study(study_name="narrow", storage=open_storage(url))
    assert len(study.trials) == len(sgd)  # an sgd-only space: only sgd trials fit

    unknown = hpo_here("create", str(_spec(tmp_path, "third", DEFAULT_SEARCH, ["nope"])),
                       "--storage", url, cwd=tmp_path)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    (line,) = unknown.stderr.strip().splitlines()
    assert "study.warm_start" in line and "'nope'" in line and "first" in line
    assert "third" not in [s.study_name for s in optuna.get_all_study_summaries(
        open_storage(url))]
