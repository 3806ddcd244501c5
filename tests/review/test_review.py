"""Review tools on a real finished study: report, compare, export/train, replicate, dashboard."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.review._report import compute
from hpo.study._storage import open_storage
from tests.conftest import REPO, run_hpo, write_spec

# Screenshots to look at, kept outside the working tree.
ARTIFACTS = Path(os.environ.get("HPO_TEST_ARTIFACTS", "/tmp/hpo-test-artifacts"))
ARTIFACTS.mkdir(parents=True, exist_ok=True)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--virtual-time-budget=8000"]
SCHEMA = json.loads((REPO / "hpo" / "review" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A directory holding hpo.journal with a finished 8-trial study named 'tiny'."""
    d = tmp_path_factory.mktemp("study")
    spec = write_spec(d, n_trials=8, epochs=3)
    result = run_hpo("launch", str(spec), "--workers", "2", cwd=d)
    assert result.returncode == 0, result.stderr[-2000:]
    return d


def _study(d: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(str(d / "hpo.journal")))


def test_reports_in_every_format(finished: Path) -> None:
    for fmt in ("text", "markdown", "json", "html"):
        out = finished / f"report.{fmt}"
        result = run_hpo("report", "tiny", "--format", fmt, "--out", str(out), cwd=finished)
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 0
    report = json.loads((finished / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    study = _study(finished)
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
    ours = json.loads(run_hpo("report", "tiny", "--format", "json", cwd=finished).stdout)
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


def test_export_then_train_verify_reproduces_and_catches_an_edit(finished: Path) -> None:
    out = finished / "exports"
    result = run_hpo("export", "tiny", "--top", "2", "--out", str(out), cwd=finished)
    assert result.returncode == 0, result.stderr
    best = _study(finished).best_trial
    path = out / f"tiny-trial{best.number}.yaml"
    text = path.read_text()
    assert "provenance:" in text and "cpu_threads:" in text and "torch:" in text
    verified = run_hpo("train", str(path), "--verify", cwd=finished)
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout and f"{best.value:.6f}" in verified.stdout
    edited = path.with_name("edited.yaml")
    edited.write_text(text.replace(f"value: {best.value}", "value: 0.123"))
    failed = run_hpo("train", str(edited), "--verify", cwd=finished)
    assert failed.returncode == 1
    assert f"differs from the exported 0.123000 by {abs(best.value - 0.123):.6f}" in failed.stderr
    json_out = run_hpo("export", "tiny", "--format", "json", "--out", str(out), cwd=finished)
    assert json.loads((out / f"tiny-trial{best.number}.json").read_text())["metric"]["value"] \
        == best.value, json_out.stderr


@pytest.mark.parametrize("edit,key", [
    (("optimizer: ", "optimizer: adamx  # "), "config.optimizer: unknown value 'adamx'"),
    (("  lr: ", "  lr: -1  # "), "config.lr: must be > 0"),
    (("batch_size: ", "batch_size: many  # "), "config.batch_size: must be an integer"),
    (("  options: {}", "  options: {image_size: 8}"), "config.data.image_size: unknown key"),
])
def test_an_edited_export_is_checked_like_a_spec(finished: Path, tmp_path: Path, edit: tuple,
                                                key: str) -> None:
    out = tmp_path / "exports"
    assert run_hpo("export", "tiny", "--out", str(out), cwd=finished).returncode == 0
    (path,) = out.glob("*.yaml")
    text = path.read_text()
    assert edit[0] in text
    bad = path.with_name("bad.yaml")
    bad.write_text(text.replace(edit[0], edit[1], 1))
    result = run_hpo("train", str(bad), cwd=finished)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hpo: error: {bad}: {key}"), result.stderr


def test_compare_aligns_studies_on_shared_levels(finished: Path) -> None:
    spec = write_spec(finished, n_trials=2, epochs=1, name="other.toml",
                      search='optimizer = ["nadam"]\n')
    assert run_hpo("launch", str(spec), "--study-name", "other", cwd=finished).returncode == 0
    result = run_hpo("compare", "tiny", "other", cwd=finished)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert rows["nadam"].split()[1] == "-"  # tiny never tried nadam


def test_replicate_gives_mean_and_ci_per_configuration(finished: Path) -> None:
    result = run_hpo("replicate", "tiny", "--top", "2", "--seeds", "2", cwd=finished)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.lstrip().startswith("Replicates (mean +/- 95% CI)")
    # Progress counts against the study's budget (8), replicates apart; the last line once.
    progress = [line for line in result.stderr.splitlines() if "finished:" in line]
    assert progress and all("/8 finished" in line or "(budget 8)" in line for line in progress)
    assert "4 replicates done" in progress[-1]
    assert all(a != b for a, b in zip(progress, progress[1:], strict=False))
    report = json.loads(run_hpo("report", "tiny", "--format", "json", cwd=finished).stdout)
    configs = report["replicates"]["configs"]
    assert len(configs) == 2 and all(c["n"] == 2 for c in configs)
    assert all(c["val_ci95"] is not None and c["test_mean"] is not None for c in configs)
    # Welch's t-test on the two best configurations' stored values, by scipy directly.
    from scipy import stats

    values = {c["trial_number"]: [t.value for t in _study(finished).get_trials()
                                  if t.user_attrs.get("replicate_of") == c["trial_number"]]
              for c in configs}
    first, second = (values[c["trial_number"]] for c in configs)
    assert sum(first) / 2 >= sum(second) / 2  # the leader is listed first
    p = stats.ttest_ind(first, second, equal_var=False).pvalue
    assert report["replicates"]["leader_separated"] is bool(p == p and p < 0.05)
    reps = [t for t in _study(finished).get_trials() if "replicate_of" in t.user_attrs]
    assert all("test_accuracy" in t.user_attrs for t in reps)
    # hpo status and the report count the same way: replicates apart, states by one name.
    status = run_hpo("status", cwd=finished).stdout.splitlines()
    header = status[0].split()
    row = next(line.split() for line in status if line.startswith("tiny "))
    counts = dict(zip(header[2:8], map(int, row[2:8]), strict=True))
    assert counts == {k: report["n_trials"][k] for k in
                      ("complete", "pruned", "failed", "running", "waiting", "replicates")}
    text = run_hpo("report", "tiny", cwd=finished).stdout
    assert "True" not in text and "False" not in text  # booleans read yes/no everywhere
    assert {t.user_attrs["config"]["seed"] for t in reps} == {1000, 1001}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_notes_and_artifacts_on_localhost_only(finished: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hpo", "dashboard", "--port", str(port)],
                              cwd=finished, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                summaries = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard never answered"
                time.sleep(0.5)
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "tiny")
        trials = []
        while time.monotonic() < deadline:  # the dashboard caches trials for a few seconds
            trials = _get(f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0")["trials"]
            if trials:
                break
            time.sleep(1)
        done = [t for t in trials if t["state"] in ("Complete", "Pruned")]
        assert done and all(t["note"]["body"].startswith(f"## Trial {t['number']}")
                            for t in done)
        assert all(a["filename"].endswith(".png") for t in done for a in t["artifacts"])
        # Replicates (the replicate test above ran first) say so on their page.
        reps = {t.number: t for t in _study(finished).get_trials()
                if "replicate_of" in t.user_attrs}
        marked = [t for t in done if t["number"] in reps]
        assert marked and all(
            f"**Replicate** of trial {reps[t['number']].user_attrs['replicate_of']}, seed "
            f"{reps[t['number']].user_attrs['replicate_seed']}" in t["note"]["body"]
            for t in marked)
        assert any(t["artifacts"] for t in done)
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
        chromium = shutil.which("chromium")
        if chromium is None and os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        if chromium:
            shot = ARTIFACTS / "dashboard.png"
            # a trial's page: the first replicate, with its note
            page = (f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials"
                    f"?numbers={marked[0]['number']}")
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={finished / 'chrome'}",
                     "--window-size=1280,900"]
            dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True,
                                 text=True, timeout=120).stdout
            assert "tiny" in dom
            subprocess.run([chromium, *flags, f"--screenshot={shot}", page],
                           capture_output=True, timeout=120)
            assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)


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
    result = run_hpo(*args, cwd=tmp_path)
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
    result = run_hpo("launch", "degradation.toml", "--workers", "2", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    every = _study(tmp_path, "degradation").get_trials()
    # two workers may each ask once more than the grid holds: those repeats are not trained
    trials = [t for t in every if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        g = t.user_attrs["gradients"]
        assert g["stages"] == ["stem", "stage1", "stage2", "stage3", "classifier"]
        assert g["ratio"][0] == pytest.approx(g["grad_norm"][0][0] / g["grad_norm"][0][3],
                                              rel=2e-3)
    report = json.loads(run_hpo("report", "degradation", "--format", "json",
                                cwd=tmp_path).stdout)
    jsonschema.validate(report, SCHEMA)
    cells = {(g["optimizer"], g["model"], g["residual"]) for g in
             report["gradient_flow"]["groups"]}
    assert cells == {(o, m, r) for o in ("adam", "sgd") for m in ("resnet20", "resnet56")
                     for r in (True, False)}
    text = run_hpo("report", "degradation", cwd=tmp_path).stdout
    assert "Gradient flow (8 trials measured" in text and "sgd resnet56 plain" in text
