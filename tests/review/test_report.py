"""The report on a real study: every format against the schema, the verdict, the counts."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.review.sections._compute import compute
from hpo.storage._backends import open_storage
from tests.conftest import REPO, hpo_here
from tests.review.conftest import ARTIFACTS, CHROMIUM_FLAGS, SCHEMA, study_in


def test_reports_in_every_format(finished: Path) -> None:
    for fmt in ("text", "markdown", "json", "html"):
        out = finished / f"report.{fmt}"
        result = hpo_here("report", "tiny", "--format", fmt, "--out", str(out), cwd=finished)
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 0
    report = json.loads((finished / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    study = study_in(finished)
    finished_trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    for axis in ("optimizer", "schedule", "init", "weight_decay_band"):
        counts = [s["trials"] for s in report["factors"][axis].values()]
        assert sum(counts) == len(finished_trials)
    assert report["best"]["trial_number"] == study.best_trial.number
    assert report["best"]["value"] == study.best_value
    # The verdict opens every format, with the leader's value and trial number.
    leader = f"with val_accuracy {study.best_value:.4f} (trial {study.best_trial.number})"
    assert leader in report["verdict"]
    text = (finished / "report.text").read_text()
    assert text.startswith(f"Verdict: {report['verdict']}\n")
    assert "Top 5 configurations (val_accuracy;" in text
    markdown = (finished / "report.markdown").read_text()
    assert f"**Verdict:** {report['verdict']}" in markdown and "| optimizer |" in markdown
    page = (finished / "report.html").read_text()
    assert "<table>" in page and "optimizer x schedule" in page and "Verdict:" in page
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:200]) == 1  # plotly.js once, whatever the figures
    # every figure says what its axes are, and what an empty heatmap cell means
    for axis, title in (("x", "epoch"), ("x", "trial"), ("x", "schedule"), ("y", "optimizer"),
                        ("y", "val_accuracy")):
        assert f'"{axis}axis":{{"title":{{"text":"{title}"}}' in page, (axis, title)
    assert "'none': no complete trial" in page and "tiny: " in page  # titles name the study
    assert (finished / "report_figures" / "curves.png").stat().st_size > 1000
    chromium = shutil.which("chromium")
    if chromium:  # kept to be looked at: the report as a reader sees it
        shot = ARTIFACTS / "report.png"
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={finished / 'chrome-r'}",
                        "--window-size=1280,2400", f"--screenshot={shot}",
                        (finished / "report.html").as_uri()], capture_output=True, timeout=120)
        assert shot.stat().st_size > 10_000

def test_plain_optuna_names_the_same_best_trial(finished: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "best-trial", "--study-name", "tiny",
         "--storage", "hpo.journal", "-f", "json"], cwd=finished, capture_output=True,
        text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ours = json.loads(hpo_here("report", "tiny", "--format", "json", cwd=finished).stdout)
    assert json.loads(result.stdout)["number"] == ours["best"]["trial_number"]

def test_pruning_savings_equal_a_hand_count() -> None:
    def trial(state: str, epochs: int, **extra: object):
        return create_trial(state=TrialState[state], value=0.5 if state == "COMPLETE" else None,
                            intermediate_values={i: 0.1 for i in range(1, epochs + 1)},
                            user_attrs={"epochs_run": epochs, **extra},
                            system_attrs=extra.pop("system_attrs", {}))

    trials = [trial("COMPLETE", 10), trial("COMPLETE", 10), trial("PRUNED", 3),
              trial("PRUNED", 5), trial("FAIL", 4)]
    retry = create_trial(state=TrialState.COMPLETE, value=0.6,
                         intermediate_values={i: 0.2 for i in range(1, 11)},
                         user_attrs={"epochs_run": 10, "resumed_from_epoch": 4},
                         system_attrs={"failed_trial": 4, "retry_history": [4]})
    study = optuna.create_study(direction="maximize")
    study.add_trials([*trials, retry])
    c = compute(study.get_trials(), full_epochs=10)
    # By hand: 5 finished trials (3 complete, one a retry; 2 pruned) x 10 epochs = 50; they
    # ran 10 + 10 + 10 + 3 + 5 = 38; the pruned ones skipped 7 + 5 = 12.
    assert c["pruning"] == {"full_epochs": 50, "epochs_run": 38, "saved_epochs": 12,
                            "saved_share": 12 / 50}
    assert c["complete"]["trials"] == 3 and c["complete"]["epochs"] == 10 + 10 + 6
    assert c["pruned"]["epochs"] == 8 and c["retried"] == {"trials": 1, "epochs": 4,
                                                            "device_hours": 0.0}
    assert c["failed"]["trials"] == 0

@pytest.mark.parametrize("case", ["unknown-study", "no-finished-trial", "all-failed",
                                  "unwritable-out", "missing-journal", "busy-port"])
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    storage = open_storage(str(tmp_path / "hpo.journal"))
    args = ["report", "s"]
    if case in ("no-finished-trial", "all-failed"):
        study = optuna.create_study(study_name="s", storage=storage)
        if case == "all-failed":
            study.add_trial(create_trial(state=TrialState.FAIL))
        else:
            study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.1}))
    elif case == "unwritable-out":
        study = optuna.create_study(study_name="s", storage=storage)
        study.add_trial(create_trial(value=0.5, user_attrs={"config": {}}))
        args += ["--out", str(tmp_path / "missing" / "r.txt")]
    elif case == "missing-journal":  # a typo must not create an empty journal
        args = ["status", "--storage", "typo.journal"]
    elif case == "busy-port":
        busy = socket.create_server(("127.0.0.1", 0))
        args = ["dashboard", "--port", str(busy.getsockname()[1])]
    result = hpo_here(*args, cwd=tmp_path)
    if case == "busy-port":
        busy.close()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), result.stderr
    expect = {"unknown-study": "no study named 's'", "no-finished-trial": "no complete trial",
              "all-failed": "its trials are: fail", "unwritable-out": "does not exist",
              "missing-journal": "storage typo.journal: no such file",
              "busy-port": "cannot listen on 127.0.0.1"}[case]
    assert expect in lines[0]
    assert not (tmp_path / "typo.journal").exists()

def test_the_degradation_study_reports_gradient_flow_per_cell(tmp_path: Path) -> None:
    """studies/degradation.toml, shortened to one epoch: every cell of the grid carries its
    gradient figures, and the report's section has one row per cell."""
    spec = (REPO / "studies" / "degradation.toml").read_text().replace("epochs = 15",
                                                                       "epochs = 1")
    (tmp_path / "degradation.toml").write_text(spec)
    result = hpo_here("launch", "degradation.toml", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    every = study_in(tmp_path, "degradation").get_trials()
    # two workers may each ask once more than the grid holds: those repeats are not trained
    trials = [t for t in every if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        g = t.user_attrs["gradients"]
        assert g["stages"] == ["stem", "stage1", "stage2", "stage3", "classifier"]
        assert g["ratio"][0] == pytest.approx(g["grad_norm"][0][0] / g["grad_norm"][0][3],
                                              rel=2e-3)
    report = json.loads(hpo_here("report", "degradation", "--format", "json",
                                cwd=tmp_path).stdout)
    jsonschema.validate(report, SCHEMA)
    cells = {(g["optimizer"], g["model"], g["residual"]) for g in
             report["gradient_flow"]["groups"]}
    assert cells == {(o, m, r) for o in ("adam", "sgd") for m in ("resnet20", "resnet56")
                     for r in (True, False)}
    text = hpo_here("report", "degradation", cwd=tmp_path).stdout
    assert "Gradient flow (8 trials measured" in text and "sgd resnet56 plain" in text


def test_the_shipped_schema_is_the_sections_fragments() -> None:
    """report.schema.json is written from the section table (see hpo/review/sections), so
    the file a user validates against cannot drift from the code."""
    from hpo.review.sections import report_schema

    assert SCHEMA == report_schema()


def test_each_section_builds_exactly_the_keys_its_schema_names(finished: Path) -> None:
    from hpo.review._evidence import gather
    from hpo.review.sections import SECTIONS

    evidence, so_far = gather(study_in(finished), "hpo.journal"), {}
    for section in sorted(SECTIONS, key=lambda s: s.last):
        built = section.build(evidence, so_far)
        assert set(built) == set(section.schema), section.name
        jsonschema.validate(built, {"type": "object", "properties": section.schema})
        so_far.update(built)


def test_a_new_section_is_one_entry_in_the_table(finished: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One Section added to the table reaches the JSON, its schema, text, Markdown, HTML
    (table and figure) and the PNG folder, with nothing else changed."""
    import plotly.graph_objects as go

    from hpo.review import _render, sections
    from hpo.review._evidence import gather
    from hpo.review._report import assemble

    def pngs(r: dict, folder: Path) -> None:
        (folder / "epochs.png").write_bytes(b"png")

    extra = sections.Section(
        "epochs", lambda e, r: {"epochs_total": sum(len(t.intermediate_values)
                                                   for t in e.finished)},
        {"epochs_total": {"type": "integer", "minimum": 1}},
        tables=lambda r: [("Epochs reported", (["epochs"], [[str(r["epochs_total"])]]))],
        figures=lambda r, e: [("Epochs figure", go.Figure(go.Bar(x=[1], y=[1])))],
        pngs=pngs)
    monkeypatch.setattr(sections, "SECTIONS", (*sections.SECTIONS, extra))
    evidence = gather(study_in(finished), "hpo.journal")
    report = assemble(evidence)
    jsonschema.validate(report, sections.report_schema())
    assert report["epochs_total"] >= 8 and "epochs_total" in sections.report_schema()["required"]
    assert "Epochs reported" in _render.to_text(report)
    assert "## Epochs reported" in _render.to_markdown(report)
    page = _render.to_html(report, evidence, tmp_path / "r.html")
    assert "<h2>Epochs figure</h2>" in page and "<h2>Epochs reported</h2>" in page
    assert (tmp_path / "r_figures" / "epochs.png").read_bytes() == b"png"
    assert _render.to_text(report, only=("epochs",)).strip().startswith("Epochs reported")
