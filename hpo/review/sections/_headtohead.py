"""The head-to-head section of the report: which level of the compared axis wins, at equal
tuning budgets, and by how much.

A ``[compare]`` study gives every level of one axis the same number of trials and then retrains
each level's best configuration with new seeds (its *finalists*). This module reads that study:

- per level, the expected best validation value after n = 1, 2, 4, ... trials (Dodge et al.
  2019, "Show Your Work": drawing n of the level's N observed values with replacement,
  E[max_n] = sum_i v(i) ((i/N)^n - ((i-1)/N)^n)), with its standard deviation; a pruned trial
  enters with the last value it reached;
- the finalists' validation and test means with 95 % CIs;
- every pair of levels: the difference of finalists' test accuracy (validation where a
  finalist has none), Welch's t-test and its CI, Holm's correction for the number of pairs;
- the verdict: the ranking at the full budget, the gap to the runner-up with its CI and
  whether it is significant, and whether the ranking changes at smaller budgets.

Ordinary studies get :func:`unequal_note`: a TPE study spends its trials on the level it
believes in, and its verdict then compares a tuned level with an untuned one.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.review._evidence import Evidence
from hpo.review._format import pm
from hpo.review._stats import ALPHA, budgets, ci95, expected_best, holm, welch
from hpo.review.sections._section import (
    INTEGER,
    NUMBER,
    SHARE,
    STRING,
    Report,
    Titled,
    array,
    mapping,
    maybe,
    record_of,
)

# An ordinary study's levels are "very unequal" when one has this many times the complete
# trials of another (and at least UNEQUAL_MIN of them).
UNEQUAL_RATIO = 3
UNEQUAL_MIN = 4

_FINALIST = record_of({
    "trial_number": INTEGER, "n": INTEGER, "val_mean": NUMBER, "val_ci95": maybe("number"),
    "test_mean": maybe("number"), "test_ci95": maybe("number"), "values": array(NUMBER),
    "test_values": array(NUMBER)}, nullable=True)
SCHEMA = {"head_to_head": {
    "description": "Only for [compare] studies (null otherwise): equal budgets per level of one "
                   "axis, finalists retrained with new seeds, pairwise Welch tests with Holm's "
                   "correction, expected best value per budget (Dodge et al. 2019).",
    **record_of({
        "axis": STRING, "budget": {"type": "integer", "minimum": 1},
        "seeds": {"type": "integer", "minimum": 2},
        "levels": array(record_of({
            "level": {}, "trials": INTEGER, "complete": INTEGER, "failed": INTEGER,
            "best": maybe("number"), "best_trial": maybe("integer"),
            "expected_best": array(record_of({"n": {"type": "integer", "minimum": 1},
                                              "mean": NUMBER,
                                              "std": {"type": "number", "minimum": 0}})),
            "finalist": _FINALIST})),
        "state": {"enum": ["tuning", "finalists", "done"]},
        "compared_by": STRING,
        "pairs": array(record_of({"a": {}, "b": {}, "diff": NUMBER, "ci95": maybe("number"),
                                  "p": SHARE, "p_holm": SHARE,
                                  "significant": {"type": "boolean"}})),
        "ranking": {"type": "array"},
        "ranking_by_n": mapping({"type": "array"}),
    }, nullable=True)}}


def compare_of(study: optuna.Study) -> tuple[str, list[Any], int, int] | None:
    """(axis, levels, budget, seeds) of a head-to-head study, from its stored spec."""
    spec = record.stored_spec(study)
    compare = spec.get("compare")
    if not isinstance(compare, dict):
        return None
    axis = compare["axis"]
    return axis, list(spec["search"][axis]), int(compare["budget"]), int(compare.get("seeds", 3))


def _level_row(study: optuna.Study, level: Any, trials: list[FrozenTrial],
               replicates: list[FrozenTrial], ns: list[int]) -> dict[str, Any]:
    sign = record.direction_sign(study)
    continued = record.retried_numbers(trials)
    finished = [t for t in trials if t.state in record.FINISHED and t.number not in continued]
    values = [v for t in finished if (v := record.last_value(t)) is not None]
    leader = next(iter(record.leaders(study, trials)), None)
    row: dict[str, Any] = {
        "level": level, "trials": len(finished),
        "complete": sum(t.state == TrialState.COMPLETE for t in finished),
        "failed": sum(t.state == TrialState.FAIL and t.number not in continued
                      and record.SURPLUS not in t.user_attrs for t in trials),
        "best": None if leader is None else leader.value,
        "best_trial": None if leader is None else leader.number,
        "expected_best": [dict(zip(("n", "mean", "std"), (n, *expected_best(values, n, sign)),
                                   strict=True)) for n in ns] if values else [],
        "finalist": None,
    }
    mine = [t for t in replicates if leader is not None
            and t.user_attrs.get(record.REPLICATE_OF) == leader.number]
    if mine:
        val_mean, val_ci = ci95([t.value for t in mine])
        tests = [t.user_attrs[record.TEST_ACCURACY] for t in mine
                 if record.TEST_ACCURACY in t.user_attrs]
        test_mean, test_ci = ci95(tests)
        row["finalist"] = {"trial_number": leader.number, "n": len(mine), "val_mean": val_mean,
                           "val_ci95": val_ci, "test_mean": test_mean, "test_ci95": test_ci,
                           "values": [t.value for t in mine], "test_values": tests}
    return row


def _pairs(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    done = [r for r in rows if r["finalist"] and len(r["finalist"][key]) >= 1]
    pairs = []
    for a, b in itertools.combinations(done, 2):
        diff, half, p = welch(a["finalist"][key], b["finalist"][key])
        pairs.append({"a": a["level"], "b": b["level"], "diff": diff, "ci95": half, "p": p})
    for pair, adjusted in zip(pairs, holm([p["p"] for p in pairs]), strict=True):
        pair["p_holm"] = adjusted
        pair["significant"] = adjusted < ALPHA
    return pairs


def head_to_head(study: optuna.Study, trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    """The head-to-head section of a ``[compare]`` study's report; None for other studies.

    Fields: ``axis``, ``budget``, ``seeds``, ``state`` (tuning, finalists, done); per level
    (``levels``): ``trials``, ``complete``, ``failed``, ``best``, ``best_trial``,
    ``expected_best`` (``n``, ``mean``, ``std``) and ``finalist`` (the best configuration's
    replicates: ``n``, ``val_mean``, ``val_ci95``, ``test_mean``, ``test_ci95``, ``values``,
    ``test_values``); ``pairs`` (``a``, ``b``, ``diff``, ``ci95``, ``p``, ``p_holm``,
    ``significant``) compared by ``compared_by``; ``ranking`` and ``ranking_by_n``.
    """
    protocol = compare_of(study)
    if protocol is None:
        return None
    axis, levels, budget, seeds = protocol
    sign = record.direction_sign(study)
    own = [t for t in trials if not record.is_replicate(t) and not record.is_warm(t)
           and record.SURPLUS not in t.user_attrs and axis in t.params]
    replicates = [t for t in trials if record.is_replicate(t) and t.state == TrialState.COMPLETE
                  and record.DUPLICATE_OF not in t.user_attrs]
    ns = budgets(budget)
    rows = [_level_row(study, level, [t for t in own if t.params[axis] == level], replicates, ns)
            for level in levels]
    tuning = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials
                 if not record.is_replicate(t) and not record.is_warm(t))
    finalists_done = all(r["finalist"] and r["finalist"]["n"] >= seeds
                         for r in rows if r["best"] is not None)
    by_test = all(r["finalist"] and len(r["finalist"]["test_values"]) == r["finalist"]["n"]
                  for r in rows if r["finalist"])
    key, measure = ("test_values", "test accuracy") if by_test else \
        ("values", record.spec_metric(study))
    higher = 1.0 if by_test else sign
    pairs = _pairs(rows, key)
    return {
        "axis": axis, "budget": budget, "seeds": seeds, "levels": rows,
        "state": ("tuning" if tuning else
                  "done" if finalists_done and any(r["finalist"] for r in rows) else
                  "finalists"),
        "compared_by": measure, "pairs": pairs,
        "ranking": _ranking(rows, key, higher),
        "ranking_by_n": {str(n): _ranking_at(rows, i, sign) for i, n in enumerate(ns)},
    }


def _ranking(rows: list[dict[str, Any]], key: str, higher: float) -> list[Any]:
    """Levels best first by their finalists' mean (levels without finalists last, by their best
    trial)."""
    def score(r: dict[str, Any]) -> tuple[int, float]:
        f = r["finalist"]
        if f and f[key]:
            return 0, -higher * statistics.fmean(f[key])
        return 1, 0.0
    return [r["level"] for r in sorted(rows, key=score)]


def _ranking_at(rows: list[dict[str, Any]], i: int, sign: float) -> list[Any]:
    """Levels best first by their expected best value at the ``i``-th budget."""
    have = [r for r in rows if r["expected_best"]]
    return [r["level"] for r in sorted(have, key=lambda r: -sign * r["expected_best"][i]["mean"])]


def verdict(h: dict[str, Any]) -> str:
    """One sentence with numbers: the ranking at the budget, the gap to the runner-up with its
    CI and significance after Holm's correction, and whether smaller budgets rank otherwise."""
    axis, budget = h["axis"], h["budget"]
    head = f"Head-to-head on {axis}, {budget} trials per level"
    rows = {r["level"]: r for r in h["levels"]}
    if h["state"] != "done":
        best = ", ".join(f"{r['level']} {r['best']:.4f} ({r['trials']}/{budget})"
                         for r in h["levels"] if r["best"] is not None)
        doing = "finalists are being retrained" if h["state"] == "finalists" else "tuning"
        return f"{head}: not decided yet ({doing}); best so far: {best or 'none complete'}."
    ranked = [lvl for lvl in h["ranking"] if rows[lvl]["finalist"]]
    measure = h["compared_by"]
    key = "test_mean" if measure == "test accuracy" else "val_mean"
    ci = "test_ci95" if key == "test_mean" else "val_ci95"
    means = ", ".join(f"{lvl} {pm(rows[lvl]['finalist'][key], rows[lvl]['finalist'][ci])}"
                      for lvl in ranked)
    text = f"{head}, best of each retrained with {h['seeds']} seeds ({measure}): {means}. "
    if len(ranked) >= 2:
        first, second = ranked[:2]
        pair = next(p for p in h["pairs"] if {p["a"], p["b"]} == {first, second})
        gap = pair["diff"] if pair["a"] == first else -pair["diff"]
        interval = "" if pair["ci95"] is None else \
            f" (95 % CI {gap - pair['ci95']:.4f} to {gap + pair['ci95']:.4f})"
        if pair["significant"]:
            text += (f"{first} beats {second} by {gap:.4f}{interval}, significant after "
                     f"Holm's correction for {len(h['pairs'])} pair(s) (p = "
                     f"{pair['p_holm']:.3g}).")
        else:
            text += (f"{first} and {second} are not separated: {first} leads by {gap:.4f}"
                     f"{interval}, p = {pair['p_holm']:.3g} after Holm's correction for "
                     f"{len(h['pairs'])} pair(s).")
    text += _budget_clause(h["ranking_by_n"])
    return text


def _budget_clause(by_n: dict[str, list[Any]]) -> str:
    """Says when the level expected to lead changes with the number of trials per level."""
    leaders = [(int(n), order[0]) for n, order in by_n.items() if order]
    if len({level for _, level in leaders}) < 2:
        return ""
    spans: list[tuple[Any, list[int]]] = []
    for n, level in leaders:
        if spans and spans[-1][0] == level:
            spans[-1][1].append(n)
        else:
            spans.append((level, [n]))
    parts = [f"{level} at {ns[0]}" + (f"-{ns[-1]}" if len(ns) > 1 else "")
             for level, ns in spans]
    return (" The leader depends on the budget (expected best validation value, Dodge et "
            f"al.): {', '.join(parts)} trials per level.")


def unequal_note(levels: dict[str, Any]) -> str:
    """For an ordinary study: the axes whose levels received very unequal numbers of complete
    trials, or an empty string."""
    notes = []
    for axis, rows in levels.items():
        counts = {lvl: row["complete"] for lvl, row in rows.items()}
        if len(counts) < 2:
            continue
        most, least = max(counts, key=counts.get), min(counts, key=counts.get)
        if counts[most] >= UNEQUAL_MIN and counts[most] >= UNEQUAL_RATIO * max(1, counts[least]):
            notes.append((axis, f"{most} {counts[most]} complete, {least} {counts[least]}"))
    if not notes:
        return ""
    what = "; ".join(f"{axis}: {text}" for axis, text in notes)
    return (f" Not a fair comparison ({what}): the sampler tuned some levels far more than "
            f"others; a head-to-head study ([compare] axis = \"{notes[0][0]}\") gives each level "
            "the same budget.")


def tables(h: dict[str, Any], metric: str) -> list[Titled]:
    """The section as titled tables: levels, pairs, expected best value per budget."""
    rows = [[str(r["level"]), str(r["trials"]), str(r["complete"]), str(r["failed"]),
             "-" if r["best"] is None else f"{r['best']:.4f} (trial {r['best_trial']})",
             *((str(f["n"]), pm(f["val_mean"], f["val_ci95"]), pm(f["test_mean"],
                                                                      f["test_ci95"]))
               if (f := r["finalist"]) else ("0", "-", "-"))]
            for r in h["levels"]]
    out = [(f"Head-to-head on {h['axis']} ({h['budget']} trials per level, {h['state']}): "
            f"finalists = each level's best configuration retrained with new seeds "
            f"(mean +/- 95 % CI)",
            ([h["axis"], "trials", "complete", "failed", f"best {metric}", "finalist seeds",
              f"finalist {metric}", "finalist test accuracy"], rows))]
    if h["pairs"]:
        out.append((f"Pairs: difference of {h['compared_by']} (Welch's t-test, 95 % CI; p "
                    f"adjusted by Holm for {len(h['pairs'])} pairs)",
                    (["a", "b", "a - b", "95 % CI", "p", "p (Holm)", "significant"],
                     [[str(p["a"]), str(p["b"]), f"{p['diff']:+.4f}",
                       "-" if p["ci95"] is None else
                       f"{p['diff'] - p['ci95']:+.4f} to {p['diff'] + p['ci95']:+.4f}",
                       f"{p['p']:.3g}", f"{p['p_holm']:.3g}",
                       "yes" if p["significant"] else "no"] for p in h["pairs"]])))
    ns = [str(x["n"]) for x in next((r["expected_best"] for r in h["levels"]
                                      if r["expected_best"]), [])]
    out.append((f"Expected best {metric} after n trials per level (Dodge et al. 2019; mean "
                "+/- std over draws of the level's trials)",
                ([h["axis"], *(f"n={n}" for n in ns)],
                 [[str(r["level"]), *(f"{x['mean']:.4f} +/- {x['std']:.4f}"
                                      for x in r["expected_best"])] for r in h["levels"]])))
    return out


def figure(h: dict[str, Any], name: str, metric: str) -> Any:
    """The expected-best curves, one line per level with its +/- std band (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in h["levels"]:
        xs = [x["n"] for x in r["expected_best"]]
        fig.add_trace(go.Scatter(
            x=xs, y=[x["mean"] for x in r["expected_best"]], mode="lines+markers",
            name=str(r["level"]),
            error_y={"type": "data", "array": [x["std"] for x in r["expected_best"]]}))
    fig.update_layout(title=f"{name}: expected best {metric} after n trials per "
                            f"{h['axis']} (Dodge et al. 2019)",
                      xaxis_title="trials per level (n)", yaxis_title=f"expected best {metric}",
                      xaxis_type="log")
    return fig


def png(h: dict[str, Any], name: str, metric: str, path: Any) -> None:
    """The same figure as a PNG (matplotlib), for papers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    for r in h["levels"]:
        xs = [x["n"] for x in r["expected_best"]]
        means = [x["mean"] for x in r["expected_best"]]
        stds = [x["std"] for x in r["expected_best"]]
        ax.plot(xs, means, marker="o", label=str(r["level"]))
        ax.fill_between(xs, [m - s for m, s in zip(means, stds, strict=True)],
                        [m + s for m, s in zip(means, stds, strict=True)], alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set(xlabel="trials per level (n)", ylabel=f"expected best {metric}",
           title=f"{name}: expected best {metric} per {h['axis']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build(e: Evidence, r: Report) -> Report:
    return {"head_to_head": head_to_head(e.study, e.trials)}


def report_tables(r: Report) -> list[Titled]:
    return tables(r["head_to_head"], r["metric"]) if r["head_to_head"] else []


def report_figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    if not r["head_to_head"]:
        return []
    return [("Head-to-head: expected best value per budget",
             figure(r["head_to_head"], r["study"], r["metric"]))]


def report_pngs(r: Report, folder: Path) -> None:
    """``expected_best.png``."""
    if r["head_to_head"]:
        png(r["head_to_head"], r["study"], r["metric"], folder / "expected_best.png")
