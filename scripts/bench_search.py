"""Search efficiency: hpo's shipped search settings against Optuna's defaults and random search.

For each problem (a spec: its data, network and search space) and each seed, each method runs
one study, trial after trial, through hpo's own objective (the same trainer, checkpoints and,
for hpo's pruner, pauses and promotions):

- ``optuna``: Optuna's defaults, ``TPESampler(seed=seed)`` + ``MedianPruner()``;
- ``hpo``: the spec's own ``[sampler]`` and ``[pruner]`` (the settings hpo ships);
- ``random``: ``RandomSampler(seed=seed)``, unpruned.

Two figures per run: the epochs trained until a trial first reports a validation accuracy of
at least ``--target`` at any epoch (pruned and paused trials count the epochs they ran; a
promoted trial counts only the epochs it trained itself), and the best final value of a
complete trial within the first ``--budget`` epochs (finding the target faster must not mean
settling for less). Runs stop at ``--max-epochs``; one that never reaches the target counts as
that many epochs (a lower bound). Prints per-seed lines, then per problem the medians and, on
the last line, ``ratio_vs_optuna_defaults`` for each problem (hpo's median epochs / Optuna's).

    .venv/bin/python scripts/bench_search.py [--problems quickstart,digits-resnet20]
        [--seeds 24] [--first-seed 100] [--jobs 2] [--methods optuna,hpo,random]

Seeds run in parallel processes (``--jobs``), one thread each, so the figures do not depend on
the core count. Settings are chosen on seeds 0-11 (``--first-seed 0 --seeds 12``); the
defaults report seeds 100-123, which play no part in that choice.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Problem:
    """A spec to search and the validation accuracy that counts as found."""

    spec: Path
    target: float
    budget: int  # epochs for the best-value figure
    max_epochs: int


PROBLEMS = {
    # 8x8 digits, ResNet-8, five optimizers x four schedules x three inits; 0.99 = at most two
    # errors in 288 validation images.
    "quickstart": Problem(ROOT / "studies" / "quickstart.toml", 0.99, 144, 480),
    # The same images through a deeper network (ResNet-20) and another space (SGD-family and
    # Adam-family with step, cosine and one-cycle; label smoothing searched).
    "digits-normfree": Problem(ROOT / "studies" / "digits-normfree.toml", 0.93, 144, 480),
}
METHODS = ("optuna", "hpo", "random")


@dataclass
class Run:
    epochs_to_target: int | None
    best_within_budget: float | None
    trials: int
    promoted: int


def search(problem_name: str, method: str, seed: int, spec_path: str | None = None) -> Run:
    """One study of ``method`` on ``problem_name`` (its spec, or ``spec_path`` instead)."""
    import optuna
    import torch

    from hpo import record
    from hpo.study._checkpoints import CheckpointStore
    from hpo.study._objective import Objective
    from hpo.study._promotion import AshaPruner, promote_due
    from hpo.study._samplers import build_pruner, build_sampler
    from hpo.study._spec import load_spec

    optuna.logging.set_verbosity(logging.ERROR)
    logging.getLogger("hpo").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    problem = PROBLEMS[problem_name]
    spec = load_spec(spec_path or problem.spec)
    if method == "optuna":
        sampler, pruner = optuna.samplers.TPESampler(seed=seed), optuna.pruners.MedianPruner()
    elif method == "random":
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    else:
        sampler = build_sampler(spec.sampler, spec.sampler_options, seed, spec.grid)
        pruner = build_pruner(spec.pruner, spec.pruner_options)
    promoting = isinstance(pruner, AshaPruner) and pruner.promotion
    study = optuna.create_study(direction=spec.direction, sampler=sampler, pruner=pruner)
    spent, hit, best, promoted = 0, None, None, 0
    sign = record.direction_sign(study)
    with tempfile.TemporaryDirectory() as tmp:
        objective = Objective(spec, torch.device("cpu"), checkpoints=CheckpointStore(
            Path(tmp), "bench"))
        while spent < problem.max_epochs and (hit is None or spent < problem.budget):
            if promoting and promote_due(study, pruner) is not None:
                promoted += 1
            ran: list[optuna.trial.FrozenTrial] = []
            study.optimize(objective, n_trials=1, catch=(Exception,),
                           callbacks=[lambda _, t, ran=ran: ran.append(t)])
            trial = ran[0]
            start = int(trial.user_attrs.get(record.RESUMED_FROM_EPOCH, 0))
            run = int(trial.user_attrs.get(record.EPOCHS_RUN, start)) - start
            if hit is None:
                hit = next((spent + e - start for e, v in sorted(trial.intermediate_values.items())
                            if e > start and v >= problem.target), None)
            spent += run
            if (trial.state == optuna.trial.TrialState.COMPLETE and spent <= problem.budget
                    and (best is None or sign * trial.value > sign * best)):
                best = trial.value
    return Run(hit, best, len(study.trials), promoted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel processes")
    parser.add_argument("--spec", default=None, help="a spec to try as 'hpo' in place of the "
                        "problem's own (for choosing settings; one problem at a time)")
    args = parser.parse_args()
    problems, methods = args.problems.split(","), args.methods.split(",")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(p, m, s) for p in problems for m in methods for s in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {job: pool.submit(search, *job, args.spec) for job in jobs}
        results = {}
        for job, future in futures.items():
            run = results[job] = future.result()
            p, m, s = job
            print(f"{p} {m:7s} seed {s}: {run.epochs_to_target or PROBLEMS[p].max_epochs} "
                  f"epochs{'' if run.epochs_to_target else ' (target not reached)'}, best "
                  f"{run.best_within_budget} within {PROBLEMS[p].budget}, {run.trials} trials, "
                  f"{run.promoted} promoted", flush=True)
    ratios = []
    for p in problems:
        medians = {}
        for m in methods:
            runs = [results[(p, m, s)] for s in seeds]
            costs = [r.epochs_to_target or PROBLEMS[p].max_epochs for r in runs]
            bests = [r.best_within_budget or 0.0 for r in runs]
            missed = sum(r.epochs_to_target is None for r in runs)
            medians[m] = statistics.median(costs)
            print(f"{p} {m}: median epochs to {PROBLEMS[p].target} {medians[m]:g} "
                  f"(missed {missed}/{len(runs)}), median best within {PROBLEMS[p].budget} "
                  f"epochs {statistics.median(bests):.4f}, mean {statistics.fmean(bests):.4f}")
        if "hpo" in medians and "optuna" in medians:
            wins = sum((results[(p, 'hpo', s)].epochs_to_target or 10**9)
                       < (results[(p, 'optuna', s)].epochs_to_target or 10**9) for s in seeds)
            ratios.append(f"{p}={medians['hpo'] / medians['optuna']:.2f}")
            print(f"{p}: hpo faster than optuna on {wins} of {len(seeds)} seeds")
    print(f"seeds={args.seeds} first_seed={args.first_seed} "
          f"ratio_vs_optuna_defaults {' '.join(ratios) or '-'}")


if __name__ == "__main__":
    main()
