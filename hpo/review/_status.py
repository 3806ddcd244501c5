"""``hpo status``: the studies in a storage, their trials by state, and who runs what now."""

from __future__ import annotations

import datetime
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.review._format import text_table
from hpo.storage._stall import stall_reason


def studies_table(storage: optuna.storages.BaseStorage) -> str:
    """One line per study: trials by state and the best value.

    Each study's trials are read once. A study that another client of the storage deletes
    while the table is built is left out: it is gone, which is no error of this command
    (``optuna.get_all_study_summaries`` raised KeyError for it).
    """
    rows = [["study", "direction", *record.STATE_NAMES, "replicates", "best", "hpo spec"]]
    for frozen in storage.get_all_studies():
        try:
            study = optuna.load_study(study_name=frozen.study_name, storage=storage)
            own, replicates = record.split_replicates(study.get_trials(deepcopy=False))
        except KeyError:
            continue
        best = record.leaders(study, own)
        rows.append([frozen.study_name, "/".join(d.name.lower() for d in frozen.directions),
                     *(str(n) for n in record.count_states(own).values()), str(replicates),
                     "-" if not best else f"{best[0].value:.4f}",
                     "yes" if record.SPEC in frozen.user_attrs else "no"])
    if len(rows) == 1:
        return "(no study in this storage)"
    return text_table(rows[0], rows[1:])


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
    """Trials by state, then each running trial with host, device, epoch, last heartbeat, last
    optimizer step, and whether it stalled."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    own, replicates = record.split_replicates(study.get_trials(deepcopy=False))
    lines = [f"study {study_name!r}: " + ", ".join(
        f"{n} {name}" for name, n in record.count_states(own).items())
        + f"; {replicates} replicates done"]
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        lines.append("no trial is running")
        return "\n".join(lines)
    sid = storage.get_study_id_from_name(study_name)
    ids = {t.number: storage.get_trial_id_from_study_id_trial_number(sid, t.number)
           for t in running}
    beats, now = _heartbeats(storage, list(ids.values()))
    rows = [["trial", "host", "pid", "device", "epoch", "of", "last heartbeat", "last step",
             "stalled", "resumed from"]]
    clock = time.time()
    for t in running:
        a: dict[str, Any] = t.user_attrs
        beat = beats.get(ids[t.number])
        ago = "-" if beat is None or now is None else f"{(now - beat).total_seconds():.0f} s ago"
        config = record.config_of(t)
        rows.append([str(t.number), str(a.get(record.HOST, "-")),
                     str(a.get(record.WORKER_PID, "-")),
                     str(a.get(record.DEVICE, "-")), str(max(t.intermediate_values, default=0)),
                     "-" if config is None else str(config.epochs), ago, *_pulse(t, clock),
                     str(a.get(record.RESUMED_FROM_EPOCH, "-"))])
    lines.append(text_table(rows[0], rows[1:]))
    return "\n".join(lines)


def _pulse(trial: optuna.trial.FrozenTrial, now: float) -> tuple[str, str]:
    """The running trial's last optimizer step (how long ago, which) and whether it counts as
    stalled (``STALLED``, its limit), from its worker's stamp (see :mod:`hpo.storage._stall`)."""
    stamp = trial.user_attrs.get(record.LAST_STEP)
    if not isinstance(stamp, dict):
        return "-", "-"
    step = f"{now - float(stamp['at']):.0f} s ago (step {stamp['steps']})"
    limit = f"limit {float(stamp['timeout_s']):g} s"
    return step, f"STALLED ({limit})" if stall_reason(trial, now) else f"no ({limit})"
