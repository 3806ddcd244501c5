"""Stalled trials: RUNNING, with a live process behind them, and no optimizer step for too long.

Heartbeats and ownership locks tell whether a trial's process is alive; neither tells whether
it trains. A worker whose main thread blocks (a data-loader deadlock, a collective that never
returns, a hung file system) keeps its heartbeat thread and its lock, and its trial would stay
RUNNING forever. So each worker stamps its running trial with its last optimizer step
(``last_step``: the step count, when, and the stall limit that applies to it), and anyone who
reads the study (the other workers between trials, on any machine; the trial's own pool; the
worker itself) can tell a stalled trial from a slow one:

- the limit is the trial's own: ``stall_timeout`` when the study or the command sets one,
  else :func:`automatic_timeout` of the gaps its own steps took, published in the stamp so
  that every reader judges the trial by the same number;
- a stalled trial is failed with a reason that says so and queued to resume from its last
  checkpoint, exactly as a trial whose process died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._lineage import Liveness, requeue

_log = logging.getLogger("hpo.worker")

# The automatic limit: this many times the longest gap between two steps seen so far in the
# trial (an epoch's evaluation and checkpoint included), never below the floor; until the
# trial's first step (data loading, a checkpoint's restore, compilation), the start-up limit.
GAP_FACTOR = 10
FLOOR_S = 300.0
STARTUP_S = 1200.0


def automatic_timeout(longest_gap: float | None) -> float:
    """The stall limit when none is set: ``max(FLOOR_S, GAP_FACTOR * longest gap between two
    steps)``; :data:`STARTUP_S` before the trial's first step (``longest_gap`` None)."""
    if longest_gap is None:
        return STARTUP_S
    return max(FLOOR_S, GAP_FACTOR * longest_gap)


def stall_reason(trial: FrozenTrial, now: float | None = None) -> str | None:
    """Why RUNNING ``trial`` counts as stalled, or None while it trains (or carries no stamp:
    a trial of an older hpo, or one whose worker has not stamped it yet)."""
    stamp = trial.user_attrs.get(record.LAST_STEP)
    if not isinstance(stamp, dict) or trial.state != TrialState.RUNNING:
        return None
    idle = (time.time() if now is None else now) - float(stamp["at"])
    limit = float(stamp["timeout_s"])
    if idle <= limit:
        return None
    where = f" on host {trial.user_attrs.get(record.HOST, 'unknown')}"
    what = f"after step {stamp['steps']}" if stamp["steps"] else "since it started"
    return (f"stalled: no optimizer step for {idle:.0f} s {what}{where} (stall_timeout "
            f"{limit:g} s); queued to resume from its checkpoint")


def requeue_stalled(study: optuna.Study, liveness: Liveness,
                    trials: Sequence[FrozenTrial] | None = None) -> dict[int, int | None]:
    """Fails and retries every stalled RUNNING trial of ``study`` (the whole study, or
    ``trials``); returns {trial number: its retry's number, None when none was queued}."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) \
        if trials is None else trials
    requeued = {}
    now = time.time()
    for t in trials:
        reason = stall_reason(t, now)
        if reason is None:
            continue
        requeued[t.number] = number = requeue(study, t.number, liveness, reason=reason)
        _log.warning("trial %d %s%s", t.number, reason.replace(
            "; queued to resume from its checkpoint", ""),
            f"; queued to resume as trial {number}" if number is not None else "")
    return requeued
