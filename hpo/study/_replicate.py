"""``hpo replicate``: retrain the best configurations with new seeds, as ordinary trials.

Each replicate is an enqueued trial with the original trial's parameters and the user
attributes ``replicate_of`` (the original trial number) and ``replicate_seed``; workers run it
like any trial (the dashboard shows it), never prune it, and evaluate it on the test split: the
one place where hpo reads that split. Replicates do not count towards the study's budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.errors import UserError


def enqueue_replicates(study: optuna.Study, top: int, seeds: int, base_seed: int) -> int:
    """Queues ``seeds`` replicates of each of the ``top`` best complete trials; how many."""
    trials = study.get_trials(deepcopy=False)
    originals = record.leaders(study, trials)[:top]
    if not originals:
        raise UserError(f"study {study.study_name!r} has no complete trial to replicate")
    return queue_replicates(study, originals, seeds, base_seed, trials)


def queue_replicates(study: optuna.Study, originals: Sequence[FrozenTrial], seeds: int,
                     base_seed: int, trials: Sequence[FrozenTrial]) -> int:
    """Queues the replicates of ``originals`` that ``trials`` do not hold yet.

    Seeds are ``base_seed + 1000 + i``: new, and the same every time, so a repeated call only
    adds the replicates that are missing (one that failed for good is queued again). Two
    processes that queue the same replicate at once both succeed; the later one then ends
    untrained when it starts (:func:`duplicate_replicate`).
    """
    have = {(t.user_attrs[record.REPLICATE_OF], t.user_attrs[record.REPLICATE_SEED])
            for t in trials if record.is_replicate(t) and t.state != TrialState.FAIL}
    queued = 0
    for t in originals:
        for i in range(seeds):
            seed = base_seed + 1000 + i
            if (t.number, seed) in have:
                continue
            study.enqueue_trial(t.params, user_attrs={record.REPLICATE_OF: t.number,
                                                      record.REPLICATE_SEED: seed},
                                skip_if_exists=False)
            queued += 1
    return queued


def duplicate_replicate(trial: optuna.Trial) -> int | None:
    """The number of an earlier replicate with ``trial``'s original and seed whose chain is
    alive (not failed for good), when ``trial`` is a replicate queued twice; else None."""
    key = (trial.user_attrs.get(record.REPLICATE_OF), trial.user_attrs.get(record.REPLICATE_SEED))
    if key[0] is None:
        return None
    system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
    mine = set(system.get(record.RETRY_HISTORY, []))
    trials = trial.study.get_trials(deepcopy=False)
    retried = record.retried_numbers(trials)
    for other in trials:
        if (other.number < trial.number and other.number not in mine
                and (other.user_attrs.get(record.REPLICATE_OF),
                     other.user_attrs.get(record.REPLICATE_SEED)) == key
                and record.DUPLICATE_OF not in other.user_attrs
                and (other.state != TrialState.FAIL or other.number in retried)):
            return other.number
    return None
