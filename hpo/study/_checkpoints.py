"""Where trials keep their checkpoints, which one a retry resumes from, and which are kept.

Layout: ``<checkpoint dir>/<study name>-<study uid>/trial-<number>.pt`` (and the one before it,
``trial-<number>.prev.pt``, while the trial runs). The directory must be reachable
by every worker (a shared file system for multi-machine studies). It comes from
``--checkpoint-dir``, else ``$HPO_CHECKPOINT_DIR``, else ``hpo-checkpoints`` beside a journal
file storage (or in the working directory for a URL).

Retention: when a trial ends, the checkpoints of its predecessors (the trials it retried) and
of every finished trial outside the best ``keep`` are deleted; the best ``keep`` complete trials
keep their final checkpoint. Running, waiting, retry-pending and paused trials (the asha
pruner's, which a promotion may resume) keep theirs, so the disk holds at most ``keep`` +
(workers) + (pending retries) + (paused trials) files per study.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.errors import UserError
from hpo.storage._backends import redact
from hpo.study._promotion import paused

ENV_VAR = "HPO_CHECKPOINT_DIR"
_FILE = re.compile(r"trial-(\d+)(\.prev)?\.pt$")
_log = logging.getLogger("hpo.worker")


def resolve_checkpoint_dir(given: str | None, storage_url: str) -> Path:
    """``--checkpoint-dir``, else ``$HPO_CHECKPOINT_DIR``, else beside the storage."""
    if given or os.environ.get(ENV_VAR):
        return Path(given or os.environ[ENV_VAR])
    if "://" not in storage_url:
        return Path(storage_url).parent / "hpo-checkpoints"
    return Path("hpo-checkpoints")


def artifact_folder(root: Path) -> Path:
    """Where trial artifacts (learning-curve figures) live: ``<checkpoint dir>/artifacts``;
    ``hpo dashboard`` serves it (or ``optuna-dashboard --artifact-dir`` that folder)."""
    return root / "artifacts"


def artifact_store(root: Path) -> optuna.artifacts.FileSystemArtifactStore:
    path = artifact_folder(root)
    path.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(path))


def study_folder(study_name: str, uid: str | None) -> str:
    """``<name>-<uid[:12]>``: same-named studies on two storages never share files. Studies
    created before the uid existed keep their old folder, ``<name>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_name)
    return f"{safe}-{uid[:12]}" if uid else safe


class CheckpointStore:
    """The checkpoint files of one study: the last two of every trial while it runs.

    A trial's checkpoint is written as ``trial-N.pt`` after its predecessor is moved to
    ``trial-N.prev.pt``, so a checkpoint that turns out unreadable (a disk fault, a truncated
    copy) leaves the one before it to resume from. A checkpoint that cannot be written at all
    (the directory went read-only, the disk is full) is a warning, once: the trial trains on
    without resume protection, and checkpoints are written again when the directory allows.

    Args:
        root: the checkpoint directory (``--checkpoint-dir``).
        study_name: the study; with ``uid`` (see :data:`record.STUDY_UID`) it names the folder.
        uid: the study's identity, also written into every checkpoint and checked on resume.
    """

    def __init__(self, root: Path, study_name: str, uid: str | None = None) -> None:
        self.dir = root / study_folder(study_name, uid)
        self.uid = uid
        self._unwritable: str | None = None  # why the last write failed, while it fails

    def check_writable(self) -> None:
        """Fails with one clear line now rather than after the first epoch."""
        check_writable(self.dir)

    def path(self, number: int) -> Path:
        return self.dir / f"trial-{number}.pt"

    def previous(self, number: int) -> Path:
        return self.dir / f"trial-{number}.prev.pt"

    def save(self, number: int, state: dict[str, Any]) -> bool:
        """Writes trial ``number``'s checkpoint, keeping the one before; False when it cannot.

        A failure is logged once until a write succeeds again (then that is logged too).
        """
        from hpo.training import save_checkpoint

        path = self.path(number)
        try:
            if path.exists():
                os.replace(path, self.previous(number))
            save_checkpoint(path, {**state, "study_uid": self.uid})
        except OSError as e:
            if self._unwritable is None:
                _log.warning("checkpoint directory %s: cannot write trial %d's checkpoint (%s); "
                             "trials train on without resume protection until it can",
                             self.dir, number, e.strerror or e)
            self._unwritable = str(e)
            return False
        if self._unwritable is not None:
            _log.warning("checkpoint directory %s: writable again; checkpoints resume", self.dir)
            self._unwritable = None
        return True

    def candidates(self, retry_history: list[int]) -> list[Path]:
        """Checkpoints a retry may resume from, best first: each predecessor's last, then the
        one before it, newest predecessor first."""
        return [p for number in reversed(retry_history)
                for p in (self.path(number), self.previous(number)) if p.exists()]

    def load(self, retry_history: list[int], config: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, Path | None]:
        """The newest readable checkpoint of this study and ``config`` in the retry's lineage.

        An unreadable file, another study's file or another config's file is logged with the
        reason and skipped; (None, None) means the retry starts afresh.
        """
        from hpo.training import load_checkpoint

        for path in self.candidates(retry_history):
            try:
                state = load_checkpoint(path)
            except Exception as e:  # torch.load fails in many ways on a bad file
                _log.warning("checkpoint %s is unreadable (%s: %s); trying an older one",
                             path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                continue
            if self.uid is not None and state.get("study_uid") not in (None, self.uid):
                _log.warning("checkpoint %s belongs to another study (uid %s, not %s); "
                             "skipped", path, state.get("study_uid"), self.uid)
                continue
            if state.get("config") != config:
                _log.warning("checkpoint %s holds another config; skipped", path)
                continue
            return state, path
        return None, None

    def retain(self, study: optuna.Study, keep: int) -> None:
        """Deletes every checkpoint nobody will resume from and that is not among the best.

        The best ``keep`` complete trials keep their final checkpoint only. A directory that
        refuses the deletions is left as it is (retention is tidying, never worth a failure).
        """
        if not self.dir.is_dir():
            return
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        pending = record.retried_numbers(
            t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING))
        pending |= {t.number for t in paused(trials)}  # a promotion resumes from them
        best = {t.number for t in record.leaders(study, trials)[:keep]}
        try:
            for file in self.dir.iterdir():
                match = _FILE.match(file.name)
                if not match:
                    continue
                trial = by_number.get(int(match.group(1)))
                if trial is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
                    continue
                if trial.number in pending or (trial.number in best and not match.group(2)):
                    continue
                file.unlink(missing_ok=True)
        except OSError as e:
            _log.warning("checkpoint directory %s: retention skipped (%s)", self.dir,
                         e.strerror or e)


def check_writable(folder: Path) -> None:
    """One clear line (a UserError) when ``folder`` cannot be created or written."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"checkpoint directory {redact(str(folder))}: cannot write there "
                        f"({e.strerror}); set --checkpoint-dir or {ENV_VAR}") from None

