"""The top configurations of a study as a plain-text table.

Reads only the stored trials (their ``config`` and ``epochs_run`` user attributes), so it works
on any study hpo wrote, from any machine.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

_COLUMNS = ("#", "trial", "state", "{metric}", "epochs", "optimizer", "lr", "weight_decay",
            "schedule", "init", "zero_init", "no_decay_bn", "other searched settings")


def _last_value(trial: FrozenTrial) -> float | None:
    if trial.value is not None:
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials; pruned ones (by last reported value) fill any gap.

    Replicates (``hpo replicate``) are left out: they repeat a configuration already listed.
    """
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def ranked(state: TrialState) -> list[FrozenTrial]:
        trials = [t for t in study.get_trials(deepcopy=False, states=(state,))
                  if _last_value(t) is not None and "replicate_of" not in t.user_attrs]
        return sorted(trials, key=lambda t: (sign * _last_value(t), t.number))  # type: ignore

    return (ranked(TrialState.COMPLETE) + ranked(TrialState.PRUNED))[:k]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def top_table(study: optuna.Study, metric: str, k: int = 5) -> str:
    """The top-``k`` table: every searched dimension's value, the metric, epochs and state."""
    rows = [[c.format(metric=metric) for c in _COLUMNS]]
    for rank, t in enumerate(top_trials(study, k), 1):
        c = t.user_attrs.get("config", {})
        named = {"optimizer", "schedule", "init", "zero_init_residual", "no_decay_bn_bias"}
        others = " ".join(f"{name}={_fmt(v)}" for name, v in sorted(t.params.items())
                          if name not in named and not name.endswith((".lr", ".weight_decay")))
        value = _last_value(t)
        rows.append([
            str(rank), str(t.number), t.state.name.lower(),
            "-" if value is None else f"{value:.4f}",
            _fmt(t.user_attrs.get("epochs_run")), _fmt(c.get("optimizer")), _fmt(c.get("lr")),
            _fmt(c.get("weight_decay")), _fmt(c.get("schedule")), _fmt(c.get("init")),
            _fmt(c.get("zero_init_residual")), _fmt(c.get("no_decay_bn_bias")), others or "-",
        ])
    if len(rows) == 1:
        return "(no finished trial yet)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
