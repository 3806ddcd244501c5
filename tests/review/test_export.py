"""Exports and their retraining: provenance, verify, an edited file checked like a spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import hpo_here
from tests.review.conftest import study_in


def test_export_then_train_verify_reproduces_and_catches_an_edit(finished: Path) -> None:
    out = finished / "exports"
    result = hpo_here("export", "tiny", "--top", "2", "--out", str(out), cwd=finished)
    assert result.returncode == 0, result.stderr
    best = study_in(finished).best_trial
    path = out / f"tiny-trial{best.number}.yaml"
    text = path.read_text()
    assert "provenance:" in text and "cpu_threads:" in text and "torch:" in text
    verified = hpo_here("train", str(path), "--verify", cwd=finished)
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout and f"{best.value:.6f}" in verified.stdout
    edited = path.with_name("edited.yaml")
    edited.write_text(text.replace(f"value: {best.value}", "value: 0.123"))
    failed = hpo_here("train", str(edited), "--verify", cwd=finished)
    assert failed.returncode == 1
    assert f"differs from the exported 0.123000 by {abs(best.value - 0.123):.6f}" in failed.stderr
    json_out = hpo_here("export", "tiny", "--format", "json", "--out", str(out), cwd=finished)
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
    assert hpo_here("export", "tiny", "--out", str(out), cwd=finished).returncode == 0
    (path,) = out.glob("*.yaml")
    text = path.read_text()
    assert edit[0] in text
    bad = path.with_name("bad.yaml")
    bad.write_text(text.replace(edit[0], edit[1], 1))
    result = hpo_here("train", str(bad), cwd=finished)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hpo: error: {bad}: {key}"), result.stderr
