"""``hpo replicate``: retrain the best configurations with new seeds, as ordinary trials.

Each replicate is an enqueued trial with the original trial's parameters and the user
attributes ``replicate_of`` (the original trial number) and ``replicate_seed``; workers run it
like any trial (the dashboard shows it), never prune it, and evaluate it on the test split: the
one place where hpo reads that split. Replicates do not count towards the study's budget.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from hpo import record
from hpo.errors import UserError


def enqueue_replicates(study: optuna.Study, top: int, seeds: int, base_seed: int) -> int:
    """Queues ``seeds`` replicates of each of the ``top`` best complete trials.

    Seeds are ``base_seed + 1000 + i``: new, and the same every time the command is run, so a
    repeated call only adds the replicates that are missing. Returns how many were queued.
    """
    trials = study.get_trials(deepcopy=False)
    originals = record.leaders(study, trials)[:top]
    if not originals:
        raise UserError(f"study {study.study_name!r} has no complete trial to replicate")
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
