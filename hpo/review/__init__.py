"""The review layer: reads studies, never runs or changes them."""

from hpo.review._compare import compare_tables, compare_text
from hpo.review._dashboard import serve_dashboard
from hpo.review._export import Recipe, export_study, load_recipe
from hpo.review._render import to_html, to_json, to_markdown, to_text
from hpo.review._report import build_report, compute, factors
from hpo.review._status import studies_table, study_status
from hpo.review._table import top_table, top_trials

__all__ = [
    "Recipe",
    "build_report",
    "compare_tables",
    "compare_text",
    "compute",
    "export_study",
    "factors",
    "load_recipe",
    "serve_dashboard",
    "studies_table",
    "study_status",
    "to_html",
    "to_json",
    "to_markdown",
    "to_text",
    "top_table",
    "top_trials",
]
