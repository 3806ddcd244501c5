"""The best configuration and the top K (complete first, pruned ones by their last value
filling the rest, :func:`hpo.record.leaders`), with their learning curves."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial

from hpo import record
from hpo.review._evidence import Evidence
from hpo.review._format import fmt
from hpo.review.sections._section import INTEGER, NUMBER, Report, Titled, array, maybe, record_of

# A stored config as the schema sees it: the recipe's axes at least.
CONFIG = {"type": "object", "required": ["optimizer", "lr", "weight_decay", "schedule", "init"]}
SCHEMA = {
    "best": record_of({"value": NUMBER, "trial_number": INTEGER, "config": CONFIG}),
    "top": array(record_of({
        "trial_number": INTEGER, "state": {"enum": ["complete", "pruned", "paused"]},
        "value": NUMBER, "epochs": maybe("integer"), "wall_time_s": maybe("number"),
        "config": CONFIG, "curve": array(NUMBER)})),
}


def _row(t: FrozenTrial) -> Report:
    return {"trial_number": t.number, "state": record.state_name(t),
            "value": record.last_value(t), "epochs": t.user_attrs.get(record.EPOCHS_RUN),
            "wall_time_s": t.user_attrs.get(record.WALL_TIME_S),
            "config": t.user_attrs.get(record.CONFIG, {}),
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}


def build(e: Evidence, r: Report) -> Report:
    best = e.leaders[0]
    top = record.leaders(e.study, e.originals, pruned=True)[:e.top_k]
    return {"best": {"value": best.value, "trial_number": best.number,
                     "config": best.user_attrs.get(record.CONFIG, {})},
            "top": [_row(t) for t in top]}


def tables(r: Report) -> list[Titled]:
    rows = []
    for i, t in enumerate(r["top"], 1):
        c = record.parse_config(t["config"])
        recipe = ["-"] * 7 if c is None else [
            c.optimizer, f"{c.lr:.3g}", f"{c.weight_decay:.3g}", c.schedule, c.init,
            fmt(c.zero_init_residual), fmt(c.no_decay_bn_bias)]
        rows.append([str(i), str(t["trial_number"]), t["state"], fmt(t["value"]),
                     fmt(t["epochs"]), fmt(t["wall_time_s"], 1), *recipe])
    metric = r["metric"]
    return [
        (f"Top {len(r['top'])} configurations ({metric}; pruned trials by their last value)",
         (["#", "trial", "state", metric, "epochs", "wall s", "optimizer", "lr", "wd",
           "schedule", "init", "zero_init", "no_decay_bn"], rows)),
        ("Learning curves of the top trials",
         (["trial", f"{metric} per epoch"],
          [[str(t["trial_number"]), " ".join(fmt(v, 3) for v in t["curve"])]
           for t in r["top"]])),
    ]


def pngs(r: Report, folder: Path) -> None:
    """``curves.png``: the top trials' learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=150)
    for t in r["top"]:
        c = record.parse_config(t["config"])
        ax.plot(range(1, len(t["curve"]) + 1), t["curve"], marker=".",
                label=f"trial {t['trial_number']} ({c.optimizer if c else '?'}, {t['state']})")
    ax.set(xlabel="epoch", ylabel=r["metric"],
           title=f"{r['study']}: learning curves of the top trials")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "curves.png")
    plt.close(fig)
