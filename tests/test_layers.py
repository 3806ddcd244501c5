"""The house rules that a reader relies on: imports run one way, one place per trial key, and
the read-only commands start without torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna

from hpo import record
from tests.conftest import REPO

HPO = REPO / "hpo"


def _imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(), re.M))
    return found


def test_the_training_core_knows_nothing_of_optuna_or_the_layers_above() -> None:
    imports = _imports(HPO / "training")
    assert not {m for m in imports if m.split(".")[0] == "optuna"}
    assert not {m for m in imports if m.startswith(("hpo.study", "hpo.review", "hpo.cli",
                                                    "hpo.record"))}
    assert not {m for m in _imports(REPO / "tests" / "training") if m.startswith("hpo.study")}


def test_imports_run_one_way_between_the_packages() -> None:
    """training and storage at the bottom (neither knows the other), study above both,
    worker above study, review beside worker reading studies; the CLI on top."""
    above = {
        "training": ("hpo.storage", "hpo.study", "hpo.worker", "hpo.review", "hpo.cli"),
        "storage": ("hpo.training", "hpo.study", "hpo.worker", "hpo.review", "hpo.cli"),
        "study": ("hpo.worker", "hpo.review", "hpo.cli"),
        "worker": ("hpo.review", "hpo.cli"),
        "review": ("hpo.worker", "hpo.cli", "hpo.study._objective"),
    }
    for package, forbidden in above.items():
        wrong = {m for m in _imports(HPO / package) if m.startswith(forbidden)}
        assert not wrong, f"hpo/{package} imports {sorted(wrong)}"


def test_each_trial_key_is_spelled_in_one_module_only() -> None:
    keys = [record.REPLICATE_OF, record.REPLICATE_SEED, record.RETRY_HISTORY,
            record.FAILED_TRIAL, record.FIXED_PARAMS, record.STOP_REASON,
            record.RESUMED_FROM_EPOCH, record.DUPLICATE_OF, record.SAMPLER_SEED,
            record.OWNER_LOCK, record.STUDY_UID, record.GRADIENTS, record.WORKER_PID]
    for path in HPO.rglob("*.py"):
        if path.name == "record.py":
            continue
        text = path.read_text()
        for key in keys:
            assert f'"{key}"' not in text, f"{path.relative_to(REPO)} spells {key!r}"


def test_read_only_commands_start_without_torch(tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={"x": 1.0},
                    distributions={"x": optuna.distributions.FloatDistribution(0, 2)},
                    user_attrs={"config": {"optimizer": "sgd"}}))
    for command in (["status"], ["status", "--study", "s"], ["report", "s"],
                    ["report", "s", "--format", "json"]):
        code = ("import sys; from hpo.cli import main; "
                f"rc = main({[*command, '--storage', str(journal)]!r}); "
                "print(rc, 'torch' in sys.modules, 'hpo.worker._worker' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120).stdout.splitlines()[-1]
        assert out == "0 False False", (command, out)


def test_configs_live_on_the_ground_floor_without_torch() -> None:
    """hpo.config imports no torch, and the review layer reads stored configs through it
    (record.config_of), never by spelling a config key."""
    code = "import sys, hpo.config, hpo.record; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    for path in (HPO / "review").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"CONFIG, \{\}\)\.get\(|config\.get\(", text), path.name
