"""Why a recipe wins: gradient flow per optimizer (and per residual or plain network, per
model, where several were tried), from the diagnostics every trial records."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo import record
from hpo.limits import EXPLODING, VANISHING
from hpo.review._evidence import Evidence, level
from hpo.review._format import fmt, group_label
from hpo.review.sections._section import (
    COUNT,
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

SCHEMA = {"gradient_flow": record_of({
    "measured_trials": COUNT,
    "groups": array(record_of({
        "optimizer": STRING, "model": maybe("string"), "residual": maybe("boolean"),
        "trials": {"type": "integer", "minimum": 1},
        "final_train_loss": maybe("number"),  # median training loss of the last epoch
        # median stem-to-last-stage gradient ratio at epoch 1 and at the last epoch
        "ratio_first": NUMBER, "ratio_last": NUMBER,
        "flagged": SHARE,  # share of trials that vanished or exploded at some epoch
        # per stage: median ||w_end - w_start|| / ||w_start|| of the last epoch
        "update_ratio": mapping(NUMBER)})),
})}


def _model(t: FrozenTrial) -> str:
    c = record.config_of(t)
    return "?" if c is None else c.model.name


def _residual(t: FrozenTrial) -> bool:
    c = record.config_of(t)
    return True if c is None else c.model.residual


def build(e: Evidence, r: Report) -> Report:
    """Trials without diagnostics are left out."""
    measured = [t for t in e.finished if t.user_attrs.get(record.GRADIENTS)]
    plain_too = len({_residual(t) for t in measured}) > 1
    depths = len({_model(t) for t in measured}) > 1
    groups: dict[tuple[str, str | None, bool | None], list[FrozenTrial]] = defaultdict(list)
    for t in measured:
        key = (level(t, "optimizer"), _model(t) if depths else None,
               _residual(t) if plain_too else None)
        groups[key].append(t)
    rows = []
    for (optimizer, model, residual), ts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        flows = [t.user_attrs[record.GRADIENTS] for t in ts]
        stages = flows[0]["stages"]
        losses = [t.user_attrs[record.CURVE]["train_loss"][-1] for t in ts
                  if t.user_attrs.get(record.CURVE, {}).get("train_loss")]
        rows.append({
            "optimizer": optimizer, "model": model, "residual": residual, "trials": len(flows),
            "final_train_loss": statistics.median(losses) if losses else None,
            "ratio_first": statistics.median(f["ratio"][0] for f in flows),
            "ratio_last": statistics.median(f["ratio"][-1] for f in flows),
            "flagged": sum(any(f["state"]) for f in flows) / len(flows),
            "update_ratio": {s: statistics.median(f["update_ratio"][-1][i] for f in flows
                                                  if f["stages"] == stages)
                             for i, s in enumerate(stages)},
        })
    return {"gradient_flow": {"groups": rows, "measured_trials": len(measured)}}


def tables(r: Report) -> list[Titled]:
    flow = r["gradient_flow"]
    stages = list(flow["groups"][0]["update_ratio"]) if flow["groups"] else []
    rows = [[group_label(g), str(g["trials"]), fmt(g["final_train_loss"]),
             f"{g['ratio_first']:.3g}", f"{g['ratio_last']:.3g}",
             f"{100 * g['flagged']:.0f} %",
             *(f"{g['update_ratio'].get(s, float('nan')):.2g}" for s in stages)]
            for g in flow["groups"]]
    title = (f"Gradient flow ({flow['measured_trials']} trials measured; ratio = stem / last "
             f"stage gradient norm, vanishing below {VANISHING:g}, exploding above "
             f"{EXPLODING:g}; update = ||w_end - w_start|| / ||w_start|| in the last epoch)")
    return [(title, (["cell", "trials", "final train loss", "ratio epoch 1", "ratio last",
                      "flagged", *(f"update {s}" for s in stages)], rows))]


def figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    """Gradient norm per stage and epoch of the report's top complete trials and the two
    worst pruned ones."""
    import plotly.graph_objects as go

    measured = {t.number: t for t in e.finished if t.user_attrs.get(record.GRADIENTS)}
    top = [measured[row["trial_number"]] for row in r["top"]
           if row["state"] == "complete" and row["trial_number"] in measured][:3]
    pruned = [t for t in measured.values() if t.state == TrialState.PRUNED
              and record.last_value(t) is not None]
    worst = sorted(pruned, key=lambda t: (e.sign * record.last_value(t), -t.number))[:2]
    shown = top + worst
    if not shown:
        return []
    flow = go.Figure()
    for t in shown:
        g = t.user_attrs[record.GRADIENTS]
        for i, stage in enumerate(g["stages"]):
            flow.add_trace(go.Scatter(
                x=list(range(1, len(g["grad_norm"]) + 1)),
                y=[row[i] for row in g["grad_norm"]], mode="lines+markers",
                legendgroup=str(t.number),
                name=f"trial {t.number} ({t.state.name.lower()}) {stage}"))
    flow.update_layout(title=f"{r['study']}: gradient norm per stage, top trials and the worst "
                             "pruned ones", xaxis_title="epoch",
                       yaxis_title="gradient L2 norm (log)", yaxis_type="log")
    return [("Gradient flow", flow)]
