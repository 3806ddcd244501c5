"""Asynchronous successive halving that pauses instead of stopping, and promotes later.

Optuna's pruners stop a trial for good: a trial that a rung judged on the evidence of its first
few peers is never reconsidered, even when the trials after it show that it belonged in the
top (Optuna issue 3351: "does not allow repechage"). ASHA as Li et al. (MLSys 2020) describe it
*pauses* such a trial and *promotes* it when the rung has grown and it ranks in the top 1/eta
there. hpo can, because every trial checkpoints every epoch and a continuation resumes bit for
bit:

- :class:`AshaPruner` decides at each rung (epochs ``min_resource * eta**k``): a trial goes on
  when it is within the best ``max(1, n // eta)`` of the ``n`` configurations that reached that
  epoch, else it is paused: it ends PRUNED (the sampler learns from it) with ``paused_at``, and
  keeps its checkpoint.
- :func:`promote_due` (a worker calls it after each trial) finds the paused trial that now ranks
  in the top of its rung, highest rung first, and queues its *continuation*: a WAITING trial
  with the same parameters, the epochs it reported and its lineage (``retry_history``), which
  resumes from the checkpoint like a retry and trains on to the next rung.
- :func:`duplicate_promotion` makes promotion exactly once: two workers that promote the same
  trial at the same moment both queue a continuation; the later-numbered one ends untrained.

A lineage (a trial, its continuations and retries) is one configuration everywhere: rung
values are counted once per lineage, and the budget and the report count its last trial only.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._lineage import continue_chain


def rung_epochs(min_resource: int, reduction_factor: int, epochs: int) -> list[int]:
    """The epochs at which a trial is judged: ``min_resource * eta**k`` below ``epochs``."""
    out, step = [], min_resource
    while step < epochs:
        out.append(step)
        step *= reduction_factor
    return out


def lineage_root(trial: FrozenTrial) -> int:
    """The first trial of ``trial``'s chain of retries and continuations."""
    return int(trial.system_attrs.get(record.FAILED_TRIAL, trial.number))


def _rung_values(trials: Sequence[FrozenTrial], epoch: int) -> dict[int, float]:
    """The value each lineage reported at ``epoch`` (one per lineage: a continuation carries
    its predecessor's values)."""
    return {lineage_root(t): t.intermediate_values[epoch] for t in trials
            if epoch in t.intermediate_values and not record.is_replicate(t)
            and not record.is_warm(t) and record.DUPLICATE_OF not in t.user_attrs}


def in_top(value: float, others: Sequence[float], reduction_factor: int, sign: float) -> bool:
    """Whether ``value`` is within the best ``max(1, n // eta)`` of itself and ``others``
    (``sign`` +1: higher is better). Ties are in."""
    n = len(others) + 1
    slots = max(1, n // reduction_factor)
    better = sum(sign * v > sign * value for v in others)
    return better < slots


class AshaPruner(optuna.pruners.BasePruner):
    """Asynchronous successive halving over lineages; with ``promotion`` its stops are pauses.

    Args:
        min_resource: the first rung, in epochs.
        reduction_factor: eta; the best 1/eta of a rung go on.
        max_resource: a full trial's epochs (no rung at or after it).
        promotion: paused trials can be promoted later (see :func:`promote_due`); without it
            a stop is final, as with Optuna's SuccessiveHalvingPruner.
        rungs: the epochs at which trials are judged, in place of ``min_resource * eta**k``
            (e.g. ``[1, 2]``: only early, where a trial is clearly hopeless, so that the late
            epochs that decide a decaying schedule are never cut on noise).
    """

    def __init__(self, min_resource: int, reduction_factor: int, max_resource: int,
                 promotion: bool = True, rungs: list[int] | None = None) -> None:
        self.rungs = [r for r in rungs if r < max_resource] if rungs else \
            rung_epochs(min_resource, reduction_factor, max_resource)
        self.reduction_factor = reduction_factor
        self.promotion = promotion

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step not in self.rungs:
            return False
        value = trial.intermediate_values[step]
        if value != value:  # NaN
            return True
        values = _rung_values(study.get_trials(deepcopy=False), step)
        values.pop(lineage_root(trial), None)
        return not in_top(value, list(values.values()), self.reduction_factor,
                          record.direction_sign(study))


def paused(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Paused trials that nothing continues yet (a continuation or retry names them)."""
    continued = record.retried_numbers(trials)
    return [t for t in trials if t.state == TrialState.PRUNED
            and record.PAUSED_AT in t.user_attrs and t.number not in continued]


def promotion_candidate(study: optuna.Study, pruner: AshaPruner,
                        trials: Sequence[FrozenTrial] | None = None) -> FrozenTrial | None:
    """The paused trial that now ranks within the top 1/eta of its rung, else None.

    ASHA's order: the highest rung first, then the best value there.
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    sign = record.direction_sign(study)
    best: tuple[int, float, FrozenTrial] | None = None
    for t in paused(trials):
        epoch = int(t.user_attrs[record.PAUSED_AT])
        values = _rung_values(trials, epoch)
        value = values.pop(lineage_root(t), None)
        if value is None or not in_top(value, list(values.values()),
                                       pruner.reduction_factor, sign):
            continue
        key = (epoch, sign * value)
        if best is None or key > best[:2]:
            best = (epoch, sign * value, t)
    return best[2] if best else None


def promote_due(study: optuna.Study, pruner: AshaPruner) -> int | None:
    """Queues the continuation of the paused trial due for promotion; its number, or None."""
    chosen = promotion_candidate(study, pruner)
    if chosen is None:
        return None
    return continue_chain(study._storage, study._study_id, chosen,  # noqa: SLF001
                          {record.PROMOTED_FROM: chosen.number}, promotion=True)


def duplicate_promotion(trial: optuna.Trial) -> int | None:
    """The number of an earlier continuation of the same paused trial, when ``trial`` is a
    continuation that another worker queued too; None when ``trial`` is the one to run.

    Two workers may promote one paused trial at the same moment. The lowest-numbered
    continuation wins (its retries, which carry it in their history, win with it); this is
    decided when a continuation starts, so exactly one chain trains on.
    """
    parent = trial.user_attrs.get(record.PROMOTED_FROM)
    if parent is None:
        return None
    system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
    mine = set(system.get(record.RETRY_HISTORY, []))
    for other in trial.study.get_trials(deepcopy=False):
        if (other.number < trial.number and other.number not in mine
                and other.user_attrs.get(record.PROMOTED_FROM) == parent
                and record.DUPLICATE_OF not in other.user_attrs):
            return other.number
    return None
