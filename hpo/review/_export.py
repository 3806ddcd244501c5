"""Best configurations as files that carry everything a retrain needs, and where they came from.

One file per configuration (YAML or JSON, same content):

- ``config``: the resolved :class:`~hpo.training.TrainConfig` (data, split, model, epochs,
  batch size, seed, precision and the whole optimization recipe);
- ``metric``: ``name``, ``value`` (what the trial reached) and ``direction``;
- ``provenance``: ``study``, ``trial_number``, ``storage`` (password redacted), ``exported_at``,
  ``versions`` (hpo, torch, optuna, python), ``device``, ``cpu_threads``, ``host``,
  ``git_commit`` when known, and ``code`` when the model or data is the user's own (per
  ``model`` / ``data``: ``import_path``, the installed ``version`` or None, the module's
  ``sha256``).

``hpo train FILE --verify`` retrains ``config`` and compares with ``metric.value``.
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

import hpo
from hpo import record
from hpo.errors import UserError
from hpo.review._evidence import gather

if TYPE_CHECKING:
    from hpo.training import TrainConfig

FORMAT_VERSION = 1


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(hpo.__file__).parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def export_study(study: optuna.Study, storage_shown: str, top_k: int, fmt: str,
                 out_dir: Path) -> list[Path]:
    """Writes the best ``top_k`` complete trials of ``study`` to ``out_dir``; returns the paths."""
    import torch

    evidence = gather(study, storage_shown, top_k)  # refuses a study with no complete trial
    leaders = evidence.leaders[:top_k]  # complete trials only: an export's metric is final
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot create the directory ({e.strerror})") from None
    versions = {"hpo": hpo.__version__, "torch": str(torch.__version__),
                "optuna": optuna.__version__, "python": platform.python_version()}
    paths = []
    for t in leaders:
        doc = {
            "hpo_export": FORMAT_VERSION,
            "config": t.user_attrs.get(record.CONFIG, {}),
            "metric": {"name": evidence.metric, "value": t.value,
                       "direction": evidence.direction},
            "provenance": {
                "study": study.study_name, "trial_number": t.number, "storage": storage_shown,
                "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "versions": versions, "device": t.user_attrs.get(record.DEVICE),
                "cpu_threads": t.user_attrs.get(record.CPU_THREADS),
                "host": t.user_attrs.get(record.HOST),
                "git_commit": _git_commit(),
                **({"code": t.user_attrs[record.CODE]} if record.CODE in t.user_attrs else {}),
            },
        }
        path = out_dir / f"{study.study_name}-trial{t.number}.{fmt}"
        text = yaml.safe_dump(doc, sort_keys=False) if fmt == "yaml" else json.dumps(doc, indent=2)
        try:
            path.write_text(text)
        except OSError as e:
            raise UserError(f"--out {out_dir}: cannot write {path.name} ({e.strerror})") from None
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Recipe:
    """An exported configuration read back: what to train and what it reached before."""

    config: TrainConfig
    metric: str
    value: float | None
    device: str | None
    cpu_threads: int | None


def load_recipe(path: str | Path) -> Recipe:
    """Reads an export (YAML or JSON); a bad file is a one-line UserError."""
    path = Path(path)
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text file (byte {e.start} is not UTF-8); expected a "
                        "file written by 'hpo export'") from None
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the export: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise UserError(f"{path}: config: missing; expected a file written by 'hpo export'")
    from hpo.study._spec import check_config  # the spec's rules; needs the training tables

    config = check_config(doc["config"], str(path))
    metric = doc.get("metric", {})
    prov = doc.get("provenance", {})
    return Recipe(config, metric.get("name", "val_accuracy"), metric.get("value"),
                  prov.get("device"), prov.get("cpu_threads"))
