"""``hpo status``: the studies in a storage, their trials by state, and who runs what now."""

from __future__ import annotations

import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
           TrialState.WAITING)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def studies_table(storage: optuna.storages.BaseStorage) -> str:
    """One line per study: trials by state and the best value."""
    rows = [["study", "direction", "complete", "pruned", "failed", "running", "waiting", "best",
             "hpo spec"]]
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in _STATES}
        best = summary.best_trial.value if summary.best_trial else None
        rows.append([summary.study_name, summary.direction.name.lower(),
                     *(str(counts[s]) for s in _STATES),
                     "-" if best is None else f"{best:.4f}",
                     "yes" if "spec" in summary.user_attrs else "no"])
    if len(rows) == 1:
        return "(no study in this storage)"
    return _table(rows)


def _heartbeats(storage: optuna.storages.BaseStorage, trial_ids: list[int]
                ) -> tuple[dict[int, datetime.datetime], datetime.datetime | None]:
    """Last heartbeat per trial id and the database's clock (RDB storages only)."""
    if not isinstance(storage, optuna.storages.RDBStorage) or not trial_ids:
        return {}, None
    import sqlalchemy
    from optuna.storages._rdb import models  # the heartbeat table has no public reader

    model = models.TrialHeartbeatModel
    with storage.engine.connect() as conn:
        now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = conn.execute(sqlalchemy.select(model.trial_id, model.heartbeat)
                            .where(model.trial_id.in_(trial_ids))).all()
    return {r[0]: r[1] for r in rows}, now.replace(tzinfo=None) if now else None


def study_status(storage: optuna.storages.BaseStorage, study_name: str) -> str:
    """Trials by state, then each running trial with host, device, epoch and last heartbeat."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in _STATES}
    lines = [f"study {study_name!r}: " + ", ".join(
        f"{n} {s.name.lower()}" for s, n in counts.items())]
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        lines.append("no trial is running")
        return "\n".join(lines)
    sid = storage.get_study_id_from_name(study_name)
    ids = {t.number: storage.get_trial_id_from_study_id_trial_number(sid, t.number)
           for t in running}
    beats, now = _heartbeats(storage, list(ids.values()))
    rows = [["trial", "host", "pid", "device", "epoch", "of", "last heartbeat", "resumed from"]]
    for t in running:
        a: dict[str, Any] = t.user_attrs
        beat = beats.get(ids[t.number])
        ago = "-" if beat is None or now is None else f"{(now - beat).total_seconds():.0f} s ago"
        rows.append([str(t.number), str(a.get("host", "-")), str(a.get("worker_pid", "-")),
                     str(a.get("device", "-")), str(max(t.intermediate_values, default=0)),
                     str(a.get("config", {}).get("epochs", "-")), ago,
                     str(a.get("resumed_from_epoch", "-"))])
    lines.append(_table(rows))
    return "\n".join(lines)
