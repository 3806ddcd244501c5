"""The report's head: which study, which metric and direction, where it is stored."""

from __future__ import annotations

from hpo.review._evidence import Evidence
from hpo.review.sections._section import STRING, Report

SCHEMA = {
    "study": STRING,
    "direction": {"enum": ["maximize", "minimize"]},
    "metric": STRING,
    # a password never reaches a report: user:secret@host is refused
    "storage": {"type": "string", "not": {"pattern": ":[^:@/]+@"}},
}


def build(e: Evidence, r: Report) -> Report:
    return {"study": e.study.study_name, "direction": e.direction,
            "metric": e.metric, "storage": e.storage}
