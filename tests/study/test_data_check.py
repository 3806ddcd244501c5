"""Data that cannot be loaded stops a study before any trial exists: one line, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from hpo.storage._backends import open_storage
from tests.conftest import hpo_here, run_hpo, write_spec
from tests.training.test_data import _imagefolder


def _spec(tmp: Path, data: str) -> Path:
    spec = write_spec(tmp)
    text = spec.read_text().replace('[data]\nname = "digits"\nval_fraction = 0.2\n', data)
    spec.write_text(text)
    return spec


def _no_study(journal: Path) -> bool:
    if not journal.exists():
        return True
    return not any(s.n_trials for s in optuna.get_all_study_summaries(open_storage(str(journal))))


@pytest.mark.parametrize("case", ["cifar-missing", "cifar-download-fails",
                                  "imagefolder-missing"])
@pytest.mark.parametrize("command", ["launch", "create"])
def test_missing_data_is_one_line_and_exit_2_before_any_trial(tmp_path, monkeypatch, case,
                                                              command) -> None:
    root = tmp_path / "nodata"
    data = {
        "cifar-missing": f'[data]\nname = "cifar10"\nroot = "{root}"\n',
        "cifar-download-fails": f'[data]\nname = "cifar10"\nroot = "{root}"\ndownload = true\n',
        "imagefolder-missing": f'[data]\nname = "imagefolder"\nroot = "{root}"\n',
    }[case]
    journal = tmp_path / "s.journal"
    # No network here: the download is sent to a closed local port, never off this machine.
    for var in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    result = hpo_here(command, str(_spec(tmp_path, data)), "--storage", str(journal),
                      cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "tiny.toml" in line and str(root) in line
    assert ("data.download" if case == "cifar-download-fails" else "data.root") in line
    assert _no_study(journal)


def test_a_worker_whose_machine_lacks_the_data_refuses_before_any_trial(tmp_path) -> None:
    root = tmp_path / "images"
    _imagefolder(root, with_test_folder=False)
    journal = tmp_path / "s.journal"
    spec = _spec(tmp_path, f'[data]\nname = "imagefolder"\nroot = "{root}"\nimage_size = 8\n')
    created = hpo_here("create", str(spec), "--storage", str(journal), cwd=tmp_path)
    assert created.returncode == 0, created.stderr[-2000:]
    shutil.rmtree(root)
    result = hpo_here("worker", "--study", "tiny", "--storage", str(journal), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "data.root" in line and str(root) in line and "Traceback" not in result.stderr
    study = optuna.load_study(study_name="tiny", storage=open_storage(str(journal)))
    assert study.trials == []


def test_a_run_whose_every_trial_failed_exits_1(tmp_path) -> None:
    spec = write_spec(tmp_path, n_trials=2, epochs=1)
    spec.write_text(spec.read_text().replace("[training]\n", "[training]\ncompile = true\n"))
    # a torch.compile backend that does not exist: every trial fails inside torch
    result = run_hpo("launch", str(spec), "--storage", str(tmp_path / "s.journal"),
                     cwd=tmp_path, env={"HPO_COMPILE_BACKEND": "no-such-backend"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "[hpo] every trial failed (2)" in result.stderr
