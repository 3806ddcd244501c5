"""The review layer: reads studies, never runs or changes them."""

from hpo.review._table import top_table, top_trials

__all__ = ["top_table", "top_trials"]
