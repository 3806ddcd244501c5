"""The report's sections, in reading order: one entry each (what it builds, its JSON schema,
its tables, its figures). Adding a section is one module and one entry here; the report
(:mod:`hpo.review._report`), every rendering (:mod:`hpo.review._render`) and the schema
(``hpo/review/report.schema.json``, :func:`report_schema`) follow from this table.
"""

from __future__ import annotations

from typing import Any

from hpo.review.sections import (
    _compute,
    _factors,
    _gradients,
    _head,
    _headtohead,
    _importances,
    _replicates,
    _rungs,
    _top,
    _trials,
    _verdict,
)
from hpo.review.sections._section import Report, Section, Table, Titled

__all__ = ["SECTIONS", "Report", "Section", "Table", "Titled", "report_schema"]

SECTIONS: tuple[Section, ...] = (
    Section("head", _head.build, _head.SCHEMA),
    Section("verdict", _verdict.build, _verdict.SCHEMA, last=True),
    Section("head_to_head", _headtohead.build, _headtohead.SCHEMA,
            tables=_headtohead.report_tables, figures=_headtohead.report_figures,
            pngs=_headtohead.report_pngs),
    Section("trials", _trials.build_counts, _trials.COUNTS_SCHEMA, tables=_trials.counts_tables,
            figures=_trials.figures),
    Section("warm_start", _trials.build_warm, _trials.WARM_SCHEMA, tables=_trials.warm_tables),
    Section("top", _top.build, _top.SCHEMA, tables=_top.tables, pngs=_top.pngs),
    Section("factors", _factors.build, _factors.SCHEMA, tables=_factors.tables,
            figures=_factors.figures, pngs=_factors.pngs),
    Section("rungs", _rungs.build, _rungs.SCHEMA, tables=_rungs.tables),
    Section("importances", _importances.build, _importances.SCHEMA,
            tables=_importances.tables, figures=_importances.figures),
    Section("gradient_flow", _gradients.build, _gradients.SCHEMA, tables=_gradients.tables,
            figures=_gradients.figures),
    Section("compute", _compute.build, _compute.SCHEMA, tables=_compute.tables),
    Section("replicates", _replicates.build, _replicates.SCHEMA, tables=_replicates.tables),
)


def report_schema() -> dict[str, Any]:
    """The report's JSON schema, composed from the sections' fragments."""
    properties = {k: v for s in SECTIONS for k, v in s.schema.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "hpo study report", "type": "object",
            "required": list(properties), "properties": properties,
            "additionalProperties": False}
