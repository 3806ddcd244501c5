"""What a report is made of: the study's trials read once and sorted into the groups every
section uses, so that the sections (and the figures drawn later) agree on one snapshot of a
study that workers may still be writing to."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial

from hpo import record
from hpo.errors import UserError

AXES = ("optimizer", "schedule", "init", "weight_decay_band")


@dataclass(frozen=True)
class Evidence:
    """One reading of a study.

    Attributes:
        study: the study (for its name, direction and stored spec; its trials are read once,
            into ``trials``).
        storage: the storage URL as it may be shown (password redacted).
        top_k: how many configurations the top table lists.
        trials: every trial.
        main: the search's own trials: no replicate, no warm-start copy, no surplus.
        originals: ``main`` without duplicates (a reused result counts once).
        finished: complete and pruned ``originals``, each lineage by its last trial.
        leaders: complete ``originals`` best first (:func:`hpo.record.leaders`).
        warm: trials copied from each earlier study.
        sign: +1 when higher is better, -1 when lower is.
        metric: the optimized metric's name.
        full_epochs: the epochs of a full trial.
    """

    study: optuna.Study
    storage: str
    top_k: int
    trials: list[FrozenTrial]
    main: list[FrozenTrial]
    originals: list[FrozenTrial]
    finished: list[FrozenTrial]
    leaders: list[FrozenTrial]
    warm: dict[str, int] = field(default_factory=dict)
    sign: float = 1.0
    metric: str = "val_accuracy"
    full_epochs: int = 0

    @property
    def direction(self) -> str:
        return "maximize" if self.sign > 0 else "minimize"


def gather(study: optuna.Study, storage_shown: str, top_k: int = 5) -> Evidence:
    """Reads ``study`` once; refuses a study with no complete trial (one line)."""
    trials = study.get_trials(deepcopy=False)
    main = [t for t in trials if not record.is_replicate(t) and not record.is_warm(t)
            and record.SURPLUS not in t.user_attrs]
    if not main:
        raise UserError(f"study {study.study_name!r} has no trial yet")
    originals = [t for t in main if record.DUPLICATE_OF not in t.user_attrs]
    continued = record.retried_numbers(originals)  # a lineage counts by its last trial
    leaders = record.leaders(study, originals)
    if not leaders:
        states = ", ".join(sorted({t.state.name.lower() for t in main}))
        raise UserError(f"study {study.study_name!r} has no complete trial (its trials are: "
                        f"{states}); nothing to report")
    warm: dict[str, int] = defaultdict(int)
    for t in trials:
        if record.is_warm(t):
            warm[str(t.user_attrs[record.WARM_START]).rpartition("#")[0]] += 1
    return Evidence(
        study=study, storage=storage_shown, top_k=top_k, trials=trials, main=main,
        originals=originals,
        finished=[t for t in originals
                  if t.state in record.FINISHED and t.number not in continued],
        leaders=leaders, warm=dict(warm), sign=record.direction_sign(study),
        metric=record.spec_metric(study),
        full_epochs=record.spec_epochs(study) or max(
            (int(t.user_attrs.get(record.EPOCHS_RUN, 0)) for t in main), default=0))


def wd_band(wd: float) -> str:
    """The decade of a weight decay, e.g. ``1e-4..1e-3``; ``0`` for no decay."""
    if wd <= 0:
        return "0"
    low = math.floor(math.log10(wd) + 1e-9)
    return f"1e{low}..1e{low + 1}"


def level(t: FrozenTrial, axis: str) -> str:
    """The trial's level on ``axis`` (one of :data:`AXES`); ``?`` when it has no config."""
    c = record.config_of(t)
    if c is None:
        return "?"
    if axis == "weight_decay_band":
        return wd_band(c.weight_decay)
    return str(getattr(c, axis))


def by_level(trials: list[FrozenTrial], axis: str) -> list[tuple[str, list[FrozenTrial]]]:
    """``trials`` grouped by their level on ``axis``, levels in sorted order."""
    groups: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        groups[level(t, axis)].append(t)
    return sorted(groups.items())

