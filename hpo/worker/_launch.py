"""``hpo create`` and ``hpo launch``: put a study (with its spec) in a storage, then run it.

``launch`` is ``create`` followed by the same local worker pool that ``hpo worker`` runs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from pathlib import Path
from typing import TextIO

import optuna

from hpo import record
from hpo.errors import UserError
from hpo.storage._backends import open_storage, redact, release
from hpo.study._compare import enqueue_slots
from hpo.study._spec import StudySpec
from hpo.study._warm import warm_sources, warm_start
from hpo.worker._pool import Slot, run_pool
from hpo.worker._signals import StopFlag


def create_or_resume(spec: StudySpec, storage_url: str, study_name: str) -> optuna.Study:
    """Creates the study with its spec stored in it, or returns the existing one.

    Resuming with a different spec would mix two experiments in one study, so it is refused;
    so is taking over a study that another tool created.
    """
    check_data_of(spec)  # before anything is created, the storage's file included
    storage = open_storage(storage_url)
    sources = warm_sources(storage, spec, storage_url)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction=spec.direction, load_if_exists=True
    )
    stored = study.user_attrs.get(record.SPEC)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise UserError(f"study {study_name!r} already exists in {redact(storage_url)} "
                            "without an hpo spec; choose another --study-name")
        study.set_user_attr(record.SPEC, dict(spec.raw))
        # The study's identity: it names the checkpoint folder, so that a same-named study in
        # another storage never reads or deletes this one's checkpoints.
        study.set_user_attr(record.STUDY_UID, uuid.uuid4().hex)
        warm_start(study, spec, sources, storage_url)
        if spec.compare is not None:
            enqueue_slots(study, spec.compare)
    elif _canonical(stored) != _canonical(spec.raw):
        differ = ", ".join(_differing_keys(stored, spec.raw)) or "their layout"
        raise UserError(f"study {study_name!r} already exists in {redact(storage_url)} with a "
                        f"different spec than {spec.source} (differing: {differ}); choose "
                        "another --study-name")
    return study


def check_budget(spec: StudySpec, n_trials: int | None) -> None:
    """A head-to-head study's budget is its slots: ``--n-trials`` cannot change it."""
    if spec.compare is not None and n_trials not in (None, spec.n_trials):
        raise UserError(f"{spec.source}: --n-trials does not apply to a [compare] study; its "
                        f"budget is compare.budget ({spec.compare.budget}) per level")


def check_trackers(spec: StudySpec, names: str | None) -> None:
    """Every tracker turned on (the spec's ``[track]`` and ``--track``) has its package; one
    line naming it otherwise, before any study or trial is created."""
    from hpo.study._tracking import missing_tracker

    missing = missing_tracker(spec.track.also(names))
    if missing:
        raise UserError(f"{spec.source}: track.{missing}: the Python package {missing!r} does "
                        "not import; install hpo's 'track' extra (pip install 'hpo[track]') "
                        "or turn the tracker off")


def check_data_of(spec: StudySpec) -> None:
    """The spec's data loads and its network (every model the search may pick) runs on it; one
    line naming the key otherwise, checked before any study or trial is created."""
    from hpo.training import check_data, check_model

    try:
        data = check_data(spec.base.data)
        sample = data.train.images[:2].float().div(255)
        for name in spec.space.choices("model") if "model" in spec.space.axes else \
                (spec.base.model.name,):
            check_model(dataclasses.replace(spec.base.model, name=name), data.channels,
                        data.num_classes, sample)
    except UserError as e:
        raise UserError(f"{spec.source}: {e}") from None


def _canonical(raw: object) -> str:
    return json.dumps(raw, sort_keys=True)


def _differing_keys(old: object, new: object, path: str = "") -> list[str]:
    """Dotted keys whose values differ between two parsed specs, in sorted order."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new))
                for k in _differing_keys(old.get(key), new.get(key),
                                         f"{path}.{key}" if path else key)]
    return [] if _canonical(old) == _canonical(new) else [path or "the whole spec"]


def launch(
    spec: StudySpec,
    storage_url: str,
    study_name: str,
    slots: list[Slot],
    *,
    checkpoint_dir: Path | None,
    n_trials: int | None = None,
    timeout: float | None = None,
    out: TextIO | None = None,
    stop: StopFlag | None = None,
    track: str | None = None,
) -> tuple[optuna.Study, int]:
    """Creates or resumes the study and runs it to its budget with local workers.

    Returns the study and the pool's exit status (see :func:`run_pool`).
    """
    out = out or sys.stderr
    check_budget(spec, n_trials)
    study = create_or_resume(spec, storage_url, study_name)
    # Only a study that has trained nothing may replay the spec's seed (copied warm-start
    # trials and queued head-to-head slots are not training).
    fresh = all(record.is_warm(t) or t.state == optuna.trial.TrialState.WAITING
                for t in study.get_trials(deepcopy=False))
    release(study._storage)  # noqa: SLF001  (the pool opens its own; this one reopens after)
    budget = n_trials or spec.n_trials
    where = ", ".join(sorted({f"GPU {s.gpu}" if s.gpu else "CPU" for s in slots}))
    print(f"[hpo] study {study_name!r} in {redact(storage_url)}: {budget} trials, "
          f"{len(slots)} worker(s) on {where}, metric {spec.metric} ({spec.direction})",
          file=out, flush=True)
    status = run_pool(storage_url, study_name, slots, checkpoint_dir=checkpoint_dir,
                      liveness=spec.liveness, n_trials=budget, timeout=timeout, out=out,
                      stop=stop, seeded=fresh, track=track)
    return study, status
