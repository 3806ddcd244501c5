"""Where trials keep their checkpoints, which one a retry resumes from, and which are kept.

Layout: ``<checkpoint dir>/<study name>/trial-<number>.pt``. The directory must be reachable
by every worker (a shared file system for multi-machine studies). It comes from
``--checkpoint-dir``, else ``$HPO_CHECKPOINT_DIR``, else ``hpo-checkpoints`` beside a journal
file storage (or in the working directory for a URL).

Retention: when a trial ends, the checkpoints of its predecessors (the trials it retried) and
of every finished trial outside the best ``keep`` are deleted; the best ``keep`` complete trials
keep their final checkpoint. Running, waiting and retry-pending trials keep theirs, so the disk
holds at most ``keep`` + (workers) + (pending retries) files per study.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.errors import UserError
from hpo.study._storage import redact

ENV_VAR = "HPO_CHECKPOINT_DIR"
_FILE = re.compile(r"trial-(\d+)\.pt$")


def resolve_checkpoint_dir(given: str | None, storage_url: str) -> Path:
    """``--checkpoint-dir``, else ``$HPO_CHECKPOINT_DIR``, else beside the storage."""
    if given or os.environ.get(ENV_VAR):
        return Path(given or os.environ[ENV_VAR])
    if "://" not in storage_url:
        return Path(storage_url).parent / "hpo-checkpoints"
    return Path("hpo-checkpoints")


def artifact_store(root: Path) -> optuna.artifacts.FileSystemArtifactStore:
    """Trial artifacts (learning-curve figures) under ``<checkpoint dir>/artifacts``; serve them
    with ``hpo dashboard`` (or ``optuna-dashboard --artifact-dir`` that folder)."""
    path = root / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


class CheckpointStore:
    """The checkpoint files of one study."""

    def __init__(self, root: Path, study_name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_name)
        self.dir = root / safe

    def check_writable(self) -> None:
        """Fails with one clear line now rather than after the first epoch."""
        probe = self.dir / f".probe-{uuid.uuid4().hex}"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UserError(f"checkpoint directory {redact(str(self.dir))}: cannot write there "
                            f"({e.strerror}); set --checkpoint-dir or {ENV_VAR}") from None

    def path(self, number: int) -> Path:
        return self.dir / f"trial-{number}.pt"

    def resume_path(self, retry_history: list[int]) -> Path | None:
        """The newest checkpoint among the trials a retry descends from, if any exists."""
        for number in reversed(retry_history):
            if self.path(number).exists():
                return self.path(number)
        return None

    def retain(self, study: optuna.Study, keep: int) -> None:
        """Deletes every checkpoint nobody will resume from and that is not among the best."""
        if not self.dir.is_dir():
            return
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        pending = {n for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)
                   for n in t.system_attrs.get("retry_history", [])}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
        best = {t.number for t in sorted(complete, key=lambda t: sign * t.value)[:keep]}
        for file in self.dir.iterdir():
            match = _FILE.match(file.name)
            if not match:
                continue
            trial = by_number.get(int(match.group(1)))
            if trial is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
                continue
            if trial.number in best or trial.number in pending:
                continue
            file.unlink(missing_ok=True)
