"""The study report as one JSON-ready dictionary; every output format renders it.

Each key belongs to one section of :data:`hpo.review.sections.SECTIONS`, which says what it
holds (its schema fragment, composed in ``hpo/review/report.schema.json``). Replicate trials
never enter the top list, factors, rungs or state counts; duplicates (``duplicate_of``: a
sampled repeat that reused a finished trial's result) are counted in ``n_trials`` but enter
neither the factor statistics nor the compute figures twice.
"""

from __future__ import annotations

import optuna

from hpo.review import sections
from hpo.review._evidence import Evidence, gather
from hpo.review.sections import Report


def assemble(e: Evidence) -> Report:
    """Every section built from one reading of the study, keys in the sections' order."""
    built: dict[str, Report] = {}
    so_far: Report = {}
    for s in sorted(sections.SECTIONS, key=lambda s: s.last):  # stable: table order kept
        built[s.name] = s.build(e, so_far)
        so_far.update(built[s.name])
    return {k: v for s in sections.SECTIONS for k, v in built[s.name].items()}


def build_report(study: optuna.Study, storage_shown: str, top_k: int = 5) -> Report:
    """The report of ``study``; refuses a study with no complete trial (one line)."""
    return assemble(gather(study, storage_shown, top_k))
