"""Which parameters mattered: PED-ANOVA importances, as optuna-dashboard computes them."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from hpo.review._evidence import Evidence
from hpo.review._format import fmt
from hpo.review.sections._section import NUMBER, STRING, Report, Titled, mapping

# PED-ANOVA compares the best 10 % of the complete trials with all of them: below 10 complete
# trials that top set is a single trial, and the importances are noise.
MIN_IMPORTANCE_TRIALS = 10
SCHEMA = {"importances": mapping(NUMBER),  # parameter -> importance
          "importances_note": STRING}  # by what, from how many trials, or why none


def build(e: Evidence, r: Report) -> Report:
    n = len(e.leaders)
    if n < MIN_IMPORTANCE_TRIALS:
        return {"importances": {}, "importances_note": (
            f"not computed: {n} complete trial(s); PED-ANOVA compares the best 10 % of "
            f"complete trials with all of them and needs at least {MIN_IMPORTANCE_TRIALS} "
            "for that top set to be more than one trial")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sub = optuna.create_study(direction=e.study.direction)  # in memory, main trials
            sub.add_trials(e.leaders)
            # As optuna-dashboard computes them: PED-ANOVA on a target where lower is better.
            values = optuna.importance.get_param_importances(
                sub, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda t: -e.sign * t.value)
        except (RuntimeError, ValueError) as err:  # e.g. no parameter shared by every trial
            return {"importances": {}, "importances_note": f"not computed: {err}"}
    return {"importances": {k: round(float(v), 6) for k, v in values.items()},
            "importances_note": f"PED-ANOVA (optuna-dashboard's evaluator) over the {n} "
                                "complete trials"}


def tables(r: Report) -> list[Titled]:
    return [(f"Parameter importances: {r['importances_note']}",
             (["parameter", "importance"],
              [[k, fmt(v, 3)] for k, v in r["importances"].items()]))]


def figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    if not r["importances"]:
        return []
    import plotly.graph_objects as go

    imp = r["importances"]
    bars = go.Figure(go.Bar(x=list(imp.values()), y=list(imp), orientation="h"))
    bars.update_layout(title=f"{r['study']}: parameter importances ({r['importances_note']})",
                       xaxis_title="importance (share, PED-ANOVA)", yaxis_title="parameter")
    return [("Parameter importances", bars)]
