"""The review layer: reads studies, never runs or changes them."""

from hpo.review._status import studies_table, study_status
from hpo.review._table import top_table, top_trials

__all__ = ["studies_table", "study_status", "top_table", "top_trials"]
