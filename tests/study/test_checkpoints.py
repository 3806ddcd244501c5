"""The checkpoint store: which file a retry resumes from, and which it must refuse."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hpo.study._checkpoints import CheckpointStore

CONFIG = {"optimizer": "sgd", "lr": 0.1}


def _state(epochs: int, config: dict = CONFIG) -> dict:
    return {"config": config, "history": [{"epoch": e} for e in range(1, epochs + 1)]}


def test_the_newest_checkpoint_wins_and_the_one_before_is_kept(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "s", "a" * 32)
    for epochs in (1, 2, 3):
        assert store.save(7, _state(epochs))
    state, path = store.load([7], CONFIG)
    assert path == store.path(7) and len(state["history"]) == 3
    assert store.previous(7).exists()


def test_an_unreadable_checkpoint_is_named_and_the_previous_one_used(tmp_path: Path,
                                                                     caplog) -> None:
    store = CheckpointStore(tmp_path, "s", "a" * 32)
    store.save(3, _state(1))
    store.save(3, _state(2))
    store.path(3).write_bytes(b"\x80\x02garbage")
    with caplog.at_level(logging.WARNING, "hpo.worker"):
        state, path = store.load([3], CONFIG)
    assert path == store.previous(3) and len(state["history"]) == 1
    assert f"checkpoint {store.path(3)} is unreadable" in caplog.text


def test_another_studys_checkpoint_is_refused(tmp_path: Path, caplog) -> None:
    mine = CheckpointStore(tmp_path, "same", "a" * 32)
    theirs = CheckpointStore(tmp_path, "same", "b" * 32)
    assert mine.dir != theirs.dir  # same name, different studies: different folders
    theirs.save(0, _state(5))
    mine.dir.mkdir(parents=True)
    shutil.copy(theirs.path(0), mine.path(0))  # a copied file, a legacy shared folder
    with caplog.at_level(logging.WARNING, "hpo.worker"):
        assert mine.load([0], CONFIG) == (None, None)
    assert "belongs to another study" in caplog.text


def test_a_study_without_identity_keeps_its_old_folder(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path, "old study", None).dir == tmp_path / "old_study"
