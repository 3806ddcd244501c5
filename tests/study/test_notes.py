"""The figures a finished trial leaves: drawn on one reused figure per process, so each must show
its own trial only, exactly as a figure drawn for it alone would."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.study import _notes

LONG = {"val_accuracy": [0.2, 0.5, 0.7, 0.8], "train_loss": [2.0, 1.1, 0.7, 0.5],
        "val_loss": [2.1, 1.3, 0.9, 0.8]}
SHORT = {"val_accuracy": [0.11], "train_loss": [2.3], "val_loss": [2.29]}
FIVE = {"stages": ["stem", "stage1", "stage2", "stage3", "classifier"],
        "grad_norm": [[0.5, 0.1, 0.05, 0.02, 3.0], [0.2, 0.05, 0.03, 0.01, 1.0]]}
THREE = {"stages": ["a", "b", "c"], "grad_norm": [[1e-3, 2e-3, 4e-3]] * 3}


@pytest.mark.parametrize(("draw", "before", "after"), [
    (_notes.curve_png, LONG, SHORT), (_notes.gradients_png, FIVE, THREE)])
def test_a_figure_drawn_after_another_trial_is_the_figure_drawn_alone(
        tmp_path: Path, draw, before: dict, after: dict) -> None:
    _notes._canvas.cache_clear()
    draw(tmp_path / "alone.png", 7, after)
    _notes._canvas.cache_clear()
    draw(tmp_path / "first.png", 3, before)
    draw(tmp_path / "second.png", 7, after)
    assert (tmp_path / "second.png").read_bytes() == (tmp_path / "alone.png").read_bytes()
    assert (tmp_path / "first.png").read_bytes() != (tmp_path / "alone.png").read_bytes()
    fig, axes = _notes._canvas("losses" if draw is _notes.curve_png else "norms")
    lines = [line for ax in axes for line in ax.lines]
    assert len(lines) == (3 if draw is _notes.curve_png else len(after["stages"]))


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_trial_of_one_epoch_leaves_its_note_and_no_figure(tmp_path: Path, epochs: int) -> None:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
    from optuna_dashboard import get_note

    study = optuna.create_study()
    trial = study.ask()
    curve = {k: v[:epochs] for k, v in LONG.items()}
    gradients = {**FIVE, "grad_norm": FIVE["grad_norm"][:epochs], "ratio": [0.2, 0.2][:epochs],
                 "state": ["", ""][:epochs], "update_ratio": [[1e-3] * 5] * epochs}
    (tmp_path / "artifacts").mkdir()
    _notes.attach(trial, FileSystemArtifactStore(tmp_path / "artifacts"), {"optimizer": "sgd"},
                  curve, "completed", "val_accuracy 0.5", gradients=gradients)
    assert get_note(trial).startswith(f"## Trial {trial.number}")
    assert f"{epochs} epochs; val accuracy" in get_note(trial)
    names = sorted(a.filename for a in get_all_artifact_meta(trial))
    assert names == ([] if epochs == 1 else [f"curve-trial-{trial.number}.png",
                                             f"gradients-trial-{trial.number}.png"])
