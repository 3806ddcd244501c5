"""Peer HPO libraries driven through hpo's own objective, for ``scripts/bench_search.py``.

Each peer proposes configurations in its own way; every one of them is trained by hpo's
objective (the same trainer, data, checkpoints and epoch accounting as hpo's own methods):
the peer's configuration is enqueued as the next Optuna trial's fixed parameters, and a pruner
adapter carries out the peer's decision at each epoch.

- Budgeted ask/tell peers (SMAC3 Hyperband, DEHB, NePS Hyperband) ask for ``(configuration,
  epochs)``. The trial is paused at that epoch with its checkpoint kept; when the peer later
  asks for the same configuration with more epochs (Hyperband's promotion), the paused trial
  is resumed from its checkpoint and only the new epochs count. A configuration the peer
  never saw before starts from scratch. DEHB evolves new configurations instead of resuming,
  and pays for it.
- Stopping schedulers (Syne Tune's ASHA and BOHB, Ray Tune's ASHA) see every epoch's value
  and answer continue or stop; a stopped trial is never resumed (none of them can).

The space is the spec's, encoded the same way for every peer: the categorical axes as they
are (booleans as "true"/"false"), and each per-optimizer range (``<optimizer>.lr``,
``<optimizer>.weight_decay``) as one unit coordinate ``lr`` / ``weight_decay`` in [0, 1],
mapped onto the chosen optimizer's own range on its scale (log or linear). A configuration
drawn uniformly by a peer is thus the same distribution as Optuna's conditional space.

The peers are the optional ``bench`` extra, installed in an environment of their own
(``HPO_VENV=.venv-bench HPO_EXTRAS=dev,bench bash scripts/setup.sh``); none is needed to run
hpo. DEHB 0.1.2 pins ``numpy<2`` while NePS and current SMAC3/Syne Tune need numpy 2: DEHB is
installed without its dependency pins (its code uses no numpy-1-only API, and its smoke run in
the tests passes on numpy 2), beside its real dependencies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.storage._lineage import continue_chain
from hpo.study._promotion import AshaPruner, paused
from hpo.study._space import AXES, Range, entry_params

BUDGET = "bench_budget"  # user attribute: the epoch at which the peer wants the trial paused


@dataclass(frozen=True)
class FlatSpace:
    """The spec's search space as one flat table of categoricals and unit coordinates."""

    choices: dict[str, tuple[Any, ...]]  # axis -> values (only searched axes)
    fixed: dict[str, Any]  # axis -> its one value
    units: dict[str, dict[str, Range]]  # "lr" -> {optimizer: its range}

    @classmethod
    def of(cls, spec: Any) -> FlatSpace:
        choices, fixed = {}, {}
        for axis in AXES:
            values = spec.space.choices(axis)
            (choices if len(values) > 1 else fixed)[axis] = values if len(values) > 1 \
                else values[0]
        optimizers = spec.space.choices("optimizer")
        units: dict[str, dict[str, Range]] = {}
        for opt in optimizers:
            for param in entry_params(opt):
                dim = spec.space.dim(opt, param)
                if isinstance(dim, Range):
                    units.setdefault(param, {})[opt] = dim
        for schedule in spec.space.choices("schedule"):
            if any(isinstance(spec.space.dim(schedule, p), Range) for p in entry_params(schedule)):
                raise SystemExit(f"bench_peers: schedule {schedule!r} has a searched setting; "
                                 "the flat encoding covers optimizer ranges only")
        return cls(choices, fixed, units)

    def params(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Optuna's conditional parameters of hpo's space for one flat configuration."""
        out = {axis: _unflag(flat[axis]) for axis in self.choices}
        opt = out.get("optimizer", self.fixed.get("optimizer"))
        for param, ranges in self.units.items():
            if opt in ranges:
                r, u = ranges[opt], float(flat[param])
                value = math.exp(math.log(r.low) + u * (math.log(r.high) - math.log(r.low))) \
                    if r.log else r.low + u * (r.high - r.low)
                out[f"{opt}.{param}"] = min(max(value, r.low), r.high)
        return out

    def configspace(self, seed: int) -> Any:
        from ConfigSpace import Categorical, ConfigurationSpace, Float

        cs = ConfigurationSpace(seed=seed)
        cs.add([Categorical(a, [_flag(v) for v in vs]) for a, vs in self.choices.items()])
        cs.add([Float(p, (0.0, 1.0)) for p in self.units])
        return cs

    def synetune(self) -> dict[str, Any]:
        from syne_tune.config_space import choice, uniform

        return {**{a: choice([_flag(v) for v in vs]) for a, vs in self.choices.items()},
                **{p: uniform(0.0, 1.0) for p in self.units}}


def _flag(value: Any) -> Any:
    return {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value


def _unflag(value: Any) -> Any:
    return {"true": True, "false": False}.get(value, value)


class PauseAtBudget(AshaPruner):
    """Pauses a trial (checkpoint kept) at the epoch its peer asked for."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        budget = trial.user_attrs.get(BUDGET, self.max_resource)
        return trial.last_step is not None and budget <= trial.last_step < self.max_resource


class StopByScheduler(optuna.pruners.BasePruner):
    """Asks a stopping scheduler after every epoch whether the trial goes on."""

    def __init__(self, driver: StoppingDriver) -> None:
        self.driver = driver

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.driver.on_epoch(trial)


@dataclass
class Peer:
    """What bench_search needs of a method: sampler, pruner, and hooks around each trial."""

    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    before: Callable[[optuna.Study], bool]  # True: it resumed a paused configuration
    after: Callable[[optuna.Study, FrozenTrial], None]


class BudgetedDriver:
    """Runs an ask/tell peer that asks for (configuration, epochs)."""

    def __init__(self, space: FlatSpace, epochs: int, ask: Callable[[], tuple[Any, dict, int]],
                 tell: Callable[[Any, float, int], None], sign: float) -> None:
        self.space, self.epochs, self.ask, self.tell, self.sign = space, epochs, ask, tell, sign
        self.pending: Any = None

    def before(self, study: optuna.Study) -> bool:
        """Queues the peer's next (configuration, epochs); True when it resumes a paused one."""
        while True:
            job, flat, budget = self.ask()
            budget = max(1, min(self.epochs, int(round(budget))))
            params = self.space.params(flat)
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.params == params and budget in t.intermediate_values]
            if done:  # asked again for epochs already trained: answer from the record
                self.tell(job, self.sign * done[-1].intermediate_values[budget], 0)
                continue
            self.pending = (job, budget)
            earlier = [t for t in paused(trials) if t.params == params
                       and int(t.user_attrs[record.PAUSED_AT]) < budget]
            if earlier:
                continue_chain(study._storage, study._study_id, earlier[-1],  # noqa: SLF001
                               {BUDGET: budget}, promotion=True)
                return True
            study.enqueue_trial(params, user_attrs={BUDGET: budget})
            return False

    def after(self, study: optuna.Study, trial: FrozenTrial) -> None:
        job, budget = self.pending
        value = trial.intermediate_values.get(budget)
        start = int(trial.user_attrs.get(record.RESUMED_FROM_EPOCH, 0))
        cost = int(trial.user_attrs.get(record.EPOCHS_RUN, start)) - start
        # a diverged or failed run: the worst value, so the peer learns to avoid it
        self.tell(job, self.sign * value if value is not None and value == value else -1.0, cost)


def smac_hyperband(spec: Any, seed: int, workdir: Path, sign: float) -> Peer:
    """SMAC3 2.4's MultiFidelityFacade: Hyperband (eta 3) with a random-forest model."""
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    space = FlatSpace.of(spec)
    scenario = Scenario(space.configspace(seed), deterministic=True, n_trials=100_000,
                        min_budget=1, max_budget=spec.base.epochs, seed=seed,
                        output_directory=workdir / "smac")
    facade = MultiFidelityFacade(
        scenario, lambda config, seed=0, budget=1: 0.0, overwrite=True, logging_level=40,
        intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=3))

    def ask() -> tuple[Any, dict, int]:
        info = facade.ask()
        return info, dict(info.config), int(round(info.budget))

    def tell(info: Any, score: float, _: int) -> None:
        facade.tell(info, TrialValue(cost=-score))

    driver = BudgetedDriver(space, spec.base.epochs, ask, tell, sign)
    return _budgeted(spec, driver)


def dehb(spec: Any, seed: int, workdir: Path, sign: float) -> Peer:
    """DEHB 0.1.2 (differential evolution within Hyperband's brackets; eta 3)."""
    import logging

    from dehb import DEHB
    from loguru import logger

    logger.remove()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    space = FlatSpace.of(spec)
    cs = space.configspace(seed)
    opt = DEHB(cs=cs, dimensions=len(list(cs.values())), min_fidelity=1,
               max_fidelity=spec.base.epochs, eta=3, n_workers=1, seed=seed,
               output_path=str(workdir / "dehb"))

    def ask() -> tuple[Any, dict, int]:
        job = opt.ask()
        return job, dict(job["config"]), int(round(job["fidelity"]))  # a Configuration

    def tell(job: Any, score: float, cost: int) -> None:
        opt.tell(job, {"fitness": -score, "cost": float(cost)})

    driver = BudgetedDriver(space, spec.base.epochs, ask, tell, sign)
    return _budgeted(spec, driver)


def neps_hyperband(spec: Any, seed: int, workdir: Path, sign: float) -> Peer:
    """NePS 0.17's ``hyperband`` (eta 3) through its ``AskAndTell``. NePS draws from the
    global random generators, which hpo's trainer reseeds for every trial: the driver keeps
    NePS's own generator states apart, seeded once."""
    import random

    import neps
    import numpy as np
    import torch

    space = FlatSpace.of(spec)
    elements = {a: neps.HPOCategorical([_flag(v) for v in vs]) for a, vs in space.choices.items()}
    elements.update({p: neps.HPOFloat(0.0, 1.0) for p in space.units})
    elements["epochs"] = neps.HPOInteger(1, spec.base.epochs, is_fidelity=True)
    random.seed(seed)
    np.random.seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        asker = neps.AskAndTell(neps.algorithms.hyperband(neps.SearchSpace(elements), eta=3))
        states = [random.getstate(), np.random.get_state(), torch.random.get_rng_state()]

    def ask() -> tuple[Any, dict, int]:
        outer = [random.getstate(), np.random.get_state(), torch.random.get_rng_state()]
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        try:
            trial = asker.ask()
        finally:
            states[:] = [random.getstate(), np.random.get_state(), torch.random.get_rng_state()]
            random.setstate(outer[0])
            np.random.set_state(outer[1])
            torch.random.set_rng_state(outer[2])
        config = dict(trial.config)
        return trial, config, int(config.pop("epochs"))

    def tell(trial: Any, score: float, _: int) -> None:
        asker.tell(trial, {"objective_to_minimize": -score})

    return _budgeted(spec, BudgetedDriver(space, spec.base.epochs, ask, tell, sign))


def _budgeted(spec: Any, driver: BudgetedDriver) -> Peer:
    return Peer(optuna.samplers.RandomSampler(seed=0),
                PauseAtBudget(1, 3, spec.base.epochs, rungs=list(range(1, spec.base.epochs))),
                driver.before, driver.after)


class StoppingDriver:
    """Runs a scheduler that stops trials: it proposes a configuration, sees each epoch's
    value and says stop or go on, and hears of every completed trial."""

    def __init__(self, space: FlatSpace, epochs: int, suggest: Callable[[], dict],
                 report: Callable[[int, float], bool], complete: Callable[[int, float], None]
                 ) -> None:
        self.space, self.epochs = space, epochs
        self.suggest, self.report, self.complete = suggest, report, complete

    def before(self, study: optuna.Study) -> bool:
        study.enqueue_trial(self.space.params(self.suggest()))
        return False

    def on_epoch(self, trial: FrozenTrial) -> bool:
        epoch = trial.last_step
        value = trial.intermediate_values[epoch]
        stop = self.report(epoch, value if value == value else 0.0)
        return stop and epoch < self.epochs  # at the last epoch "stop" means done: it completes

    def after(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            self.complete(trial.last_step, trial.value)

    def peer(self) -> Peer:
        return Peer(optuna.samplers.RandomSampler(seed=0), StopByScheduler(self), self.before,
                    self.after)


def synetune(name: str) -> Callable[[Any, int, Path, float], Peer]:
    """Syne Tune 0.16's ``ASHA`` or ``BOHB`` (asynchronous successive halving, stopping
    type, eta 3; BOHB with its kernel-density model)."""

    def build(spec: Any, seed: int, workdir: Path, sign: float) -> Peer:
        import datetime

        from syne_tune.backend.trial_status import Trial
        from syne_tune.optimizer import baselines
        from syne_tune.optimizer.scheduler import SchedulerDecision

        space = FlatSpace.of(spec)
        scheduler = getattr(baselines, name)(
            space.synetune(), metric="value", time_attr="epoch", max_t=spec.base.epochs,
            do_minimize=sign < 0, random_seed=seed)
        current: list[Any] = []
        ids = itertools.count()

        def suggest() -> dict:
            config = scheduler.suggest().config
            current[:] = [Trial(trial_id=next(ids), config=config,
                                creation_time=datetime.datetime.now())]
            scheduler.on_trial_add(current[0])
            return config

        def report(epoch: int, value: float) -> bool:
            decision = scheduler.on_trial_result(current[0], {"value": value, "epoch": epoch})
            return decision == SchedulerDecision.STOP

        def complete(epoch: int, value: float) -> None:
            scheduler.on_trial_complete(current[0], {"value": value, "epoch": epoch})

        return StoppingDriver(space, spec.base.epochs, suggest, report, complete).peer()

    return build


def ray_asha(spec: Any, seed: int, workdir: Path, sign: float) -> Peer:
    """Ray Tune 2.60's ``ASHAScheduler`` (stopping only; eta 3) over random search (Ray's
    default search). Ray drives its own loop; its scheduler is a plain object, so it runs here
    in-process, with no Ray cluster, deciding on the same epochs as in ``tune.run``."""
    import numpy as np
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    space = FlatSpace.of(spec)
    scheduler = ASHAScheduler(time_attr="epoch", metric="value", mode="max" if sign > 0 else "min",
                              max_t=spec.base.epochs, grace_period=1, reduction_factor=3)
    rng = np.random.default_rng(seed)
    current: list[Any] = []
    ids = itertools.count()

    def suggest() -> dict:
        config = {**{a: vs[int(rng.integers(len(vs)))] for a, vs in space.choices.items()},
                  **{p: float(rng.uniform()) for p in space.units}}
        current[:] = [Trial("hpo", config=config, trial_id=f"t{next(ids)}",
                            stub=True)]
        scheduler.on_trial_add(None, current[0])
        return config

    def report(epoch: int, value: float) -> bool:
        result = {"value": value, "epoch": epoch}
        return scheduler.on_trial_result(None, current[0], result) == TrialScheduler.STOP

    def complete(epoch: int, value: float) -> None:
        scheduler.on_trial_complete(None, current[0], {"value": value, "epoch": epoch})

    return StoppingDriver(space, spec.base.epochs, suggest, report, complete).peer()


PEERS: dict[str, Callable[[Any, int, Path, float], Peer]] = {
    "smac-hb": smac_hyperband,
    "dehb": dehb,
    "synetune-asha": synetune("ASHA"),
    "synetune-bohb": synetune("BOHB"),
    "ray-asha": ray_asha,
    "neps-hb": neps_hyperband,
}
