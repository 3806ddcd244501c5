"""How many trials ended how, and where warm-start trials came from; the figures that show
every trial (optimization history, intermediate values, parallel coordinates)."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from hpo import record
from hpo.review._evidence import Evidence
from hpo.review.sections._section import COUNT, Report, Titled, mapping

COUNTS_SCHEMA = {
    # complete, pruned, paused, failed, running, waiting of the search's own trials;
    # duplicates (of those, reused results), replicates and warm_start counted apart
    "n_trials": {"type": "object",
                 "required": [*record.STATE_NAMES, "duplicates", "replicates"],
                 "additionalProperties": COUNT},
}
WARM_SCHEMA = {"warm_start": mapping(COUNT)}  # earlier study -> trials copied from it


def build_counts(e: Evidence, r: Report) -> Report:
    counts: dict[str, int] = dict(record.count_states(e.main))
    counts["duplicates"] = len(e.main) - len(e.originals)
    counts["replicates"] = sum(record.is_replicate(t) for t in e.trials)
    counts["warm_start"] = sum(e.warm.values())
    return {"n_trials": counts}


def build_warm(e: Evidence, r: Report) -> Report:
    return {"warm_start": dict(e.warm)}


def counts_tables(r: Report) -> list[Titled]:
    counts = r["n_trials"]
    return [("Trials", (list(counts), [[str(v) for v in counts.values()]]))]


def warm_tables(r: Report) -> list[Titled]:
    if not r["warm_start"]:
        return []
    return [("Warm start: trials copied from earlier studies to seed the sampler (in no "
             "statistic below)",
             (["study", "trials"], [[k, str(v)] for k, v in r["warm_start"].items()]))]


def figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    """Optuna's own plots of the search's trials (replicates left out)."""
    from optuna import visualization as vis

    name, metric = r["study"], r["metric"]
    trials = [t for t in e.trials if not record.is_replicate(t)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = optuna.create_study(direction=e.study.direction)
        sub.add_trials(trials)
        history = vis.plot_optimization_history(sub, target_name=metric)
        history.update_layout(title=f"{name}: {metric} of each trial and the best so far",
                              xaxis_title="trial", yaxis_title=metric)
        curves = vis.plot_intermediate_values(sub)
        curves.update_layout(title=f"{name}: {metric} per epoch of every trial (pruned ones "
                                   "stop early)", xaxis_title="epoch", yaxis_title=metric)
        axes = [p for p in ("optimizer", "schedule", "init")
                if any(p in t.params for t in trials)]
        parallel = vis.plot_parallel_coordinate(sub, params=axes or None, target_name=metric)
        parallel.update_layout(title=f"{name}: recipes of the complete trials and their {metric}")
    return [("Optimization history", history), ("Intermediate values", curves),
            ("Parallel coordinates", parallel)]
