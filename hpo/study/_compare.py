"""Head-to-head studies: every level of one axis gets the same number of trials, searched with
its own sampler state, then its best configuration is retrained with new seeds.

An ordinary TPE study spends its trials on the level it already believes in, so its verdict
compares a tuned optimizer with an untuned one; optimizer rankings flip with the tuning
protocol (Choi et al. 2019; Schmidt et al. 2021). A ``[compare]`` section fixes the protocol:

- :func:`enqueue_slots`, when the study is created, queues ``budget`` WAITING trials per level,
  round robin, each with the axis fixed to its level. Workers only run queued trials (a WAITING
  trial is handed to exactly one worker by the storage), so the budgets are exactly equal with
  any number of workers on PostgreSQL or the journal file.
- :class:`LevelSampler` and :class:`LevelPruner` give each level its own sampler and show
  sampler and pruner only that level's trials (:class:`LevelView`), so one level's results
  never steer another's search or pruning.
- :func:`enqueue_finalists`, once every slot has finished, queues ``seeds`` replicates of each
  level's best configuration (the replicate machinery: new seeds, never pruned, the only runs
  that read the test split).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.study._replicate import queue_replicates


@dataclass(frozen=True)
class CompareSpec:
    """The ``[compare]`` section: ``axis`` (a ``[search]`` choice), its ``levels`` in spec
    order, ``budget`` trials per level and ``seeds`` replicates of each level's best."""

    axis: str
    levels: tuple[Any, ...]
    budget: int
    seeds: int

    @property
    def n_trials(self) -> int:
        return self.budget * len(self.levels)


def level_of(trial: FrozenTrial, axis: str) -> Any:
    """The trial's level on ``axis``: its parameter, or the value its queued slot fixes (before
    the trial has asked for it); None for a trial outside every slot."""
    if axis in trial.params:
        return trial.params[axis]
    return (trial.system_attrs.get(record.FIXED_PARAMS) or {}).get(axis)


class LevelView:
    """``study`` as one level's sampler or pruner should see it: only that level's trials.

    Optuna's samplers and pruners read trials through ``get_trials`` / ``_get_trials``; every
    other attribute (direction, storage, ids) is the study's own.
    """

    def __init__(self, study: optuna.Study, axis: str, level: Any) -> None:
        self._study, self._axis, self._level = study, axis, level

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _mine(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if level_of(t, self._axis) == self._level]

    def get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._mine(self._study.get_trials(*args, **kwargs))

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._mine(self._study._get_trials(*args, **kwargs))  # noqa: SLF001

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class LevelSampler(optuna.samplers.BaseSampler):
    """One inner sampler per level, each fed only its level's trials.

    Args:
        samplers: level -> its sampler (built with a seed of its own).
        axis: the compared axis.
    """

    def __init__(self, samplers: dict[Any, optuna.samplers.BaseSampler], axis: str) -> None:
        self.samplers = samplers
        self.axis = axis
        self._fallback = optuna.samplers.RandomSampler()  # a trial outside every slot

    def _pick(self, study: optuna.Study, trial: FrozenTrial
              ) -> tuple[Any, optuna.samplers.BaseSampler]:
        level = level_of(trial, self.axis)
        if level not in self.samplers:
            return study, self._fallback
        return LevelView(study, self.axis, level), self.samplers[level]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        view, sampler = self._pick(study, trial)
        return sampler.infer_relative_search_space(view, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        view, sampler = self._pick(study, trial)
        return sampler.sample_relative(view, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        view, sampler = self._pick(study, trial)
        return sampler.sample_independent(view, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        view, sampler = self._pick(study, trial)
        sampler.before_trial(view, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        view, sampler = self._pick(study, trial)
        sampler.after_trial(view, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self.samplers.values():
            sampler.reseed_rng()


class LevelPruner(optuna.pruners.BasePruner):
    """``inner`` judging each trial against its own level's trials only."""

    def __init__(self, inner: optuna.pruners.BasePruner, axis: str) -> None:
        self.inner = inner
        self.axis = axis

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        view = LevelView(study, self.axis, level_of(trial, self.axis))
        return self.inner.prune(view, trial)  # type: ignore[arg-type]


def split_by_level(compare: CompareSpec, make_sampler: Callable[[int | None], Any],
                   seed: int | None, pruner: optuna.pruners.BasePruner
                   ) -> tuple[LevelSampler, LevelPruner]:
    """A sampler per level (seeds ``seed``, ``seed + 1``, ... when seeded) and ``pruner``
    judging within levels."""
    samplers = {level: make_sampler(None if seed is None else seed + i)
                for i, level in enumerate(compare.levels)}
    return LevelSampler(samplers, compare.axis), LevelPruner(pruner, compare.axis)


def inner_pruner(pruner: optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    """The pruner that decides, under a :class:`LevelPruner` when there is one."""
    return pruner.inner if isinstance(pruner, LevelPruner) else pruner


def level_views(study: optuna.Study, compare: CompareSpec | None) -> list[Any]:
    """The study as each level sees it; the whole study when it compares nothing."""
    if compare is None:
        return [study]
    return [LevelView(study, compare.axis, level) for level in compare.levels]


def enqueue_slots(study: optuna.Study, compare: CompareSpec) -> None:
    """Queues every slot of a new head-to-head study, levels round robin, so that a study
    stopped half way has spent about the same on every level."""
    for _ in range(compare.budget):
        for level in compare.levels:
            study.enqueue_trial({compare.axis: level}, skip_if_exists=False)


def slots_open(trials: Sequence[FrozenTrial]) -> bool:
    """Whether a slot is still queued or training (replicates and warm-start trials aside)."""
    return any(t.state in (TrialState.WAITING, TrialState.RUNNING)
               and not record.is_replicate(t) and not record.is_warm(t) for t in trials)


def level_leaders(study: optuna.Study, compare: CompareSpec,
                  trials: Sequence[FrozenTrial] | None = None) -> dict[Any, FrozenTrial]:
    """Each level's best complete trial (levels with none are left out)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    out = {}
    for level in compare.levels:
        mine = [t for t in trials if level_of(t, compare.axis) == level]
        top = record.leaders(study, mine)
        if top:
            out[level] = top[0]
    return out


def enqueue_finalists(study: optuna.Study, compare: CompareSpec, base_seed: int) -> int:
    """Once every slot has finished: queues the replicates of each level's best configuration
    that are not queued yet; how many it queued (0 while slots are open)."""
    trials = study.get_trials(deepcopy=False)
    if slots_open(trials):
        return 0
    best = list(level_leaders(study, compare, trials).values())
    return queue_replicates(study, best, compare.seeds, base_seed, trials) if best else 0
