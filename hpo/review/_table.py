"""The top configurations of a study as a plain-text table.

Reads only the stored trials (their ``config`` and ``epochs_run`` user attributes), so it works
on any study hpo wrote, from any machine.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from hpo import record
from hpo.review._format import fmt, text_table

# The recipe's columns (the searched parameters shown apart are the rest)
_NAMED = ("optimizer", "lr", "weight_decay", "schedule", "init", "zero_init_residual",
          "no_decay_bn_bias")
_COLUMNS = ("#", "trial", "state", "{metric}", "epochs", "optimizer", "lr", "weight_decay",
            "schedule", "init", "zero_init", "no_decay_bn", "other searched settings")


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials; pruned ones (by last reported value) fill any gap.

    Replicates and duplicates are left out: they repeat a configuration already listed
    (:func:`hpo.record.leaders`); the state column says which rows are partial.
    """
    return record.leaders(study, pruned=True)[:k]


def top_table(study: optuna.Study, metric: str, k: int = 5) -> str:
    """The top-``k`` table: every searched dimension's value, the metric, epochs and state."""
    rows = [[c.format(metric=metric) for c in _COLUMNS]]
    for rank, t in enumerate(top_trials(study, k), 1):
        others = " ".join(f"{name}={fmt(v)}" for name, v in sorted(t.params.items())
                          if name not in _NAMED and not name.endswith((".lr", ".weight_decay")))
        value = record.last_value(t)
        c = record.config_of(t)
        recipe = ["-"] * len(_NAMED) if c is None else [
            fmt(c.optimizer), fmt(c.lr), fmt(c.weight_decay), fmt(c.schedule), fmt(c.init),
            fmt(c.zero_init_residual), fmt(c.no_decay_bn_bias)]
        rows.append([str(rank), str(t.number), record.state_name(t),
                     "-" if value is None else f"{value:.4f}",
                     fmt(t.user_attrs.get(record.EPOCHS_RUN)), *recipe, others or "-"])
    if len(rows) == 1:
        return "(no finished trial yet)"
    return text_table(rows[0], rows[1:])
