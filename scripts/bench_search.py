"""Search efficiency on digits: TPE with the quickstart pruner against random search unpruned.

For each seed, each method runs trials of studies/quickstart.toml's search space one after
another until a trial first reports a validation accuracy >= the target at any epoch; the cost
is the epochs trained until then, pruned trials counting the epochs they ran. Prints the median
over seeds and, on the last line, ``epochs_ratio`` = pruned TPE / random.

    .venv/bin/python scripts/bench_search.py [--target 0.99] [--seeds 24] [--first-seed 100]
        [--max-epochs 480] [--jobs 2]

Seeds run in parallel processes (``--jobs``), one thread each, so the figures do not depend on
the core count. The quickstart's sampler and pruner settings were chosen on seeds 0-11; the
defaults measure them on seeds 100-123, which played no part in that choice.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna
import torch

from hpo.study._samplers import build_pruner, build_sampler
from hpo.study._space import suggest_config
from hpo.study._spec import load_spec
from hpo.training import load_data, train

SPEC = Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml"


def epochs_to_target(method: str, seed: int, target: float, max_epochs: int,
                     spec_path: Path = SPEC) -> int | None:
    """Epochs ``method`` trains until a trial first reaches ``target``; None if it never does."""
    optuna.logging.set_verbosity(logging.WARNING)
    torch.set_num_threads(1)
    spec = load_spec(spec_path)
    data = load_data(spec.base.data)
    if method == "tpe+pruning":
        sampler = build_sampler(spec.sampler, spec.sampler_options, seed)
        pruner = build_pruner(spec.pruner, spec.pruner_options)
    else:
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    spent = 0
    while spent < max_epochs:
        trial = study.ask()
        config = suggest_config(trial, spec.space, spec.base)
        reached = {"hit": False}

        def on_epoch(m, trial=trial, reached=reached):
            trial.report(m.val_accuracy, m.epoch)
            if m.val_accuracy >= target:
                reached["hit"] = True
                return "target reached"
            return "pruned" if trial.should_prune() else None

        result = train(config, data, on_epoch)
        spent += result.epochs_run
        if reached["hit"]:
            return spent
        if result.status == "completed":
            study.tell(trial, result.history[-1].val_accuracy)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.99,
                        help="val accuracy to reach; 0.99 = at most 2 errors in 288 images")
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--max-epochs", type=int, default=480, help="budget of each run, in "
                        "epochs: pruned trials are cheaper, so a pruned search runs more trials")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel processes")
    parser.add_argument("--spec", type=Path, default=SPEC, help="spec whose space, sampler and "
                        "pruner to use (default: studies/quickstart.toml)")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    medians = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for method in ("tpe+pruning", "random"):
            runs = pool.map(epochs_to_target, [method] * len(seeds), seeds,
                            [args.target] * len(seeds), [args.max_epochs] * len(seeds),
                            [args.spec] * len(seeds))
            costs = []
            for seed, cost in zip(seeds, runs, strict=True):
                # a run that never reaches the target counts as its budget (a lower bound)
                costs.append(cost if cost is not None else args.max_epochs)
                print(f"{method:12s} seed {seed}: {costs[-1]} epochs"
                      + ("" if cost is not None else " (target not reached)"), flush=True)
            medians[method] = statistics.median(costs)
    ratio = medians["tpe+pruning"] / medians["random"]
    print(f"target={args.target} seeds={args.seeds} first_seed={args.first_seed} "
          f"tpe_pruned_median_epochs={medians['tpe+pruning']:g} "
          f"random_median_epochs={medians['random']:g} epochs_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
