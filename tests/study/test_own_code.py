"""Users' own network and data by import path: the example under studies/ runs a study, reports,
exports (naming its code) and retrains with --verify in a new process; bad paths and factories
that return the wrong thing are one line and exit 2, before anything is created."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import yaml

from hpo.training import ModelConfig, apply_init, build_model
from tests.conftest import REPO, hpo_here, run_hpo

EXAMPLE = REPO / "studies" / "own-model.toml"
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _spec(tmp: Path, **replace: str) -> Path:
    text = EXAMPLE.read_text().replace("n_trials = 12", "n_trials = 4").replace(
        "epochs = 6", "epochs = 2")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "own.toml"
    path.write_text(text)
    return path


def test_the_example_runs_reports_exports_and_retrains_in_a_new_process(tmp_path) -> None:
    # the study, its report and its export through the command line's code in this process
    # (the repository is on its path, as on ENV's); the retrain in a new one, which imports
    # the example's code by its import path alone
    launch = hpo_here("launch", str(_spec(tmp_path)), cwd=tmp_path)
    assert launch.returncode == 0, launch.stderr[-3000:]
    report = hpo_here("report", "own-model", cwd=tmp_path)
    assert report.returncode == 0 and "stage1" in report.stdout and "stage2" in report.stdout
    export = hpo_here("export", "own-model", "--out", "exports", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    (path,) = (tmp_path / "exports").glob("*.yaml")
    doc = yaml.safe_load(path.read_text())
    digest = hashlib.sha256((REPO / "studies" / "own_model.py").read_bytes()).hexdigest()
    assert doc["provenance"]["code"] == {
        "model": {"import_path": "studies.own_model:wide_resnet", "version": None,
                  "sha256": digest},
        "data": {"import_path": "studies.own_model:load", "version": None, "sha256": digest}}
    assert doc["config"]["model"]["options"] == {"width": 16, "blocks": 1}
    retrain = run_hpo("train", str(path), "--verify", cwd=tmp_path, env=ENV)
    assert retrain.returncode == 0, retrain.stderr[-2000:]
    assert "verified" in retrain.stdout


def test_zero_init_residual_zeroes_the_layers_the_network_marks() -> None:
    model = build_model(ModelConfig("studies.own_model:wide_resnet", options={"width": 8}), 1, 10)
    apply_init(model, "kaiming_normal", zero_init_residual=True)
    closing = [m for m in model.modules() if getattr(m, "closes_residual", False)]
    assert len(closing) == 2 and all(not m.weight.any() for m in closing)
    others = [m for m in model.modules()
              if isinstance(m, torch.nn.BatchNorm2d) and m not in closing]
    assert others and all(m.weight.eq(1).all() for m in others)


@pytest.mark.parametrize("replace, message", [
    ({'"studies.own_model:wide_resnet"': '"no_such_pkg.nets:net"'},
     "model.name: cannot import 'no_such_pkg.nets' (ModuleNotFoundError: No module named "
     "'no_such_pkg'); install it or put it on PYTHONPATH"),
    ({'"studies.own_model:wide_resnet"': '"studies.own_model:narrow_resnet"'},
     "model.name: module 'studies.own_model' has no 'narrow_resnet'"),
    ({'"studies.own_model:wide_resnet"': '"studies.own_model:np"'},
     "model.name: 'studies.own_model:np' is a module, not a function"),
    ({'"studies.own_model:wide_resnet"': '"studies.own_model:load"'},
     "model.name: studies.own_model:load fails"),
    ({'"studies.own_model:load"': '"studies.own_model:Block"'},
     "data.name: studies.own_model:Block failed (TypeError"),
    ({'name = "studies.own_model:wide_resnet"': 'name = "resnet8"'},
     "model.options: only for a model given by import path; resnet8 takes none"),
])
def test_a_bad_import_path_is_one_line_and_exit_2(tmp_path, replace: dict, message: str) -> None:
    result = hpo_here("create", str(_spec(tmp_path, **replace)), "--storage",
                      str(tmp_path / "s.journal"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "s.journal").exists()
