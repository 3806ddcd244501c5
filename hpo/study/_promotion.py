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
- With ``brackets`` (asynchronous Hyperband, Li et al. 2020, section 3.3), each new
  configuration draws a bracket: bracket ``b`` skips the first ``b`` rungs, and the last bracket
  trains to the end unjudged. Rungs compare lineages of the same bracket only. The draw's odds
  start with most of the epochs in bracket 0 (a share ``eta**-b`` of them in bracket ``b``) and
  follow how well each rung's ranking has predicted the final one (Kendall's tau between a
  rung's values and the last epoch's, over the configurations that bracket did not judge
  there), after Hyper-Tune's bracket selection (Li et
  al., VLDB 2022). A first rung whose verdicts are noise thus stops deciding for almost every
  configuration, and one that ranks well keeps most of the budget.

A lineage (a trial, its continuations and retries) is one configuration everywhere: rung
values are counted once per lineage, and the budget and the report count its last trial only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau

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


def _rung_values(trials: Sequence[FrozenTrial], epoch: int,
                 bracket: int | None = None) -> dict[int, float]:
    """The value each lineage (of ``bracket``, when given) reported at ``epoch`` (one per
    lineage: a continuation carries its predecessor's values)."""
    return {lineage_root(t): t.intermediate_values[epoch] for t in trials
            if epoch in t.intermediate_values and not record.is_replicate(t)
            and not record.is_warm(t) and record.DUPLICATE_OF not in t.user_attrs
            and (bracket is None or t.user_attrs.get(record.BRACKET, 0) == bracket)}


def in_top(value: float, others: Sequence[float], reduction_factor: int, sign: float) -> bool:
    """Whether ``value`` is within the best ``max(1, n // eta)`` of itself and ``others``
    (``sign`` +1: higher is better). Ties are in."""
    n = len(others) + 1
    slots = max(1, n // reduction_factor)
    better = sum(sign * v > sign * value for v in others)
    return better < slots


# Kendall's tau needs this many configurations with both values before it replaces the prior;
# a rung that orders them as their last epoch does at this tau or more is trusted in full.
MIN_PAIRS = 6
TRUSTED_TAU = 0.5


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
        brackets: hedge with asynchronous Hyperband's brackets, drawn with odds that follow
            each rung's measured rank consistency (see the module's docstring); without it
            every configuration faces every rung.
    """

    def __init__(self, min_resource: int, reduction_factor: int, max_resource: int,
                 promotion: bool = True, rungs: list[int] | None = None,
                 brackets: bool = False) -> None:
        self.rungs = [r for r in rungs if r < max_resource] if rungs else \
            rung_epochs(min_resource, reduction_factor, max_resource)
        self.reduction_factor = reduction_factor
        self.max_resource = max_resource
        self.promotion = promotion
        self.brackets = brackets

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step not in self.rungs:
            return False
        value = trial.intermediate_values[step]
        if value != value:  # NaN
            return True
        bracket = self.bracket(study, trial)
        if self.rungs.index(step) < bracket:
            return False
        values = _rung_values(study.get_trials(deepcopy=False), step,
                              bracket if self.brackets else None)
        values.pop(lineage_root(trial), None)
        return not in_top(value, list(values.values()), self.reduction_factor,
                          record.direction_sign(study))

    def bracket(self, study: optuna.Study, trial: FrozenTrial) -> int:
        """``trial``'s bracket: drawn when its lineage first meets a rung, then kept (a user
        attribute that continuations and retries carry)."""
        if not self.brackets:
            return 0
        if record.BRACKET in trial.user_attrs:
            return int(trial.user_attrs[record.BRACKET])
        odds = self.bracket_odds(study.get_trials(deepcopy=False))
        draw = random.Random(f"{study.study_name}:{lineage_root(trial)}").random() * sum(odds)
        bracket = next((b for b, _ in enumerate(odds) if draw < sum(odds[:b + 1])),
                       len(odds) - 1)
        study._storage.set_trial_user_attr(trial._trial_id, record.BRACKET, bracket)  # noqa: SLF001
        return bracket

    def bracket_odds(self, trials: Sequence[FrozenTrial]) -> list[float]:
        """Each bracket's weight for a new configuration's draw.

        A bracket's share of the epochs is ``eta**-b`` (bracket 0, judged at every rung, gets
        most), so its odds are that over a configuration's expected epochs there. A judged
        bracket's odds then follow how its first rung ranked the configurations that did not
        face that cut (brackets above it) against their last epoch: at Kendall's tau of 0.5 or
        more (3 pairs in 4 in the same order) they stand; below, they fall in proportion, to
        nothing at 0. Until :data:`MIN_PAIRS` such configurations have finished, and when all
        are tied, the prior stands.
        """
        final = _lineage_curves(trials, self.max_resource)
        odds = []
        for b in range(len(self.rungs) + 1):
            pairs = [(curve[self.rungs[b]], curve[self.max_resource])
                     for bracket, curve in final if bracket > b] if b < len(self.rungs) else []
            tau = kendalltau(*zip(*pairs, strict=True))[0] if len(pairs) >= MIN_PAIRS else 1.0
            trust = 1.0 if tau != tau else min(1.0, max(0.0, tau / TRUSTED_TAU))
            share = self.reduction_factor ** -b
            odds.append(trust * share / self._epochs_per_config(b))
        return odds

    def _epochs_per_config(self, bracket: int) -> float:
        """Expected epochs a configuration of ``bracket`` trains: the top 1/eta of each rung
        it faces goes on to the next."""
        marks = [*self.rungs[bracket:], self.max_resource]
        return marks[0] + sum((marks[i] - marks[i - 1]) / self.reduction_factor ** i
                              for i in range(1, len(marks)))


def _lineage_curves(trials: Sequence[FrozenTrial], last: int) -> list[tuple[int, dict]]:
    """(bracket, values by epoch) of each lineage that reported epoch ``last`` (its latest
    trial holds the chain's whole curve)."""
    curves: dict[int, tuple[int, dict]] = {}
    for t in trials:
        if last in t.intermediate_values and not record.is_replicate(t) and not record.is_warm(t):
            curves[lineage_root(t)] = (int(t.user_attrs.get(record.BRACKET, 0)),
                                       t.intermediate_values)
    return list(curves.values())


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
        values = _rung_values(trials, epoch,
                              t.user_attrs.get(record.BRACKET, 0) if pruner.brackets else None)
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
