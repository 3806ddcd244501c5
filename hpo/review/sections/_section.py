"""What one report section is: the report keys it builds, their JSON schema, its tables, and
its figures (plotly for HTML, PNG for papers). :data:`hpo.review.sections.SECTIONS` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.review._evidence import Evidence

Table = tuple[list[str], list[list[str]]]  # headers, rows
Titled = tuple[str, Table]
Report = dict[str, Any]


def _no_tables(r: Report) -> list[Titled]:
    return []


def _no_figures(r: Report, e: Evidence) -> list[tuple[str, Any]]:
    return []


def _no_pngs(r: Report, folder: Path) -> None:
    return None


@dataclass(frozen=True)
class Section:
    """One entry of the report.

    Attributes:
        name: what a caller picks it by (``hpo replicate`` prints only ``replicates``).
        build: (evidence, the report built so far) -> the report keys this section owns.
        schema: each owned key's JSON schema (the composed schema is
            ``hpo/review/report.schema.json``).
        tables: report -> titled tables, for text, Markdown and HTML alike.
        figures: (report, evidence) -> titled plotly figures, for HTML.
        pngs: (report, folder) -> writes PNG versions of figures.
        last: built after the others (it reads what they built).
    """

    name: str
    build: Callable[[Evidence, Report], Report]
    schema: dict[str, Any]
    tables: Callable[[Report], list[Titled]] = _no_tables
    figures: Callable[[Report, Evidence], list[tuple[str, Any]]] = _no_figures
    pngs: Callable[[Report, Path], None] = _no_pngs
    last: bool = False


# --- JSON-schema shorthands, so each section's fragment reads like the data it describes
NUMBER: dict[str, Any] = {"type": "number"}
INTEGER: dict[str, Any] = {"type": "integer"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
SHARE: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1}
STRING: dict[str, Any] = {"type": "string"}


def maybe(kind: str) -> dict[str, Any]:
    """``kind`` or null."""
    return {"type": [kind, "null"]}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def mapping(values: dict[str, Any]) -> dict[str, Any]:
    """An object whose keys are data (levels, parameters) and whose values are ``values``."""
    return {"type": "object", "additionalProperties": values}


def record_of(properties: dict[str, Any], required: list[str] | None = None,
              nullable: bool = False) -> dict[str, Any]:
    """An object with these properties, all of them required unless ``required`` says which."""
    return {"type": ["object", "null"] if nullable else "object",
            "required": list(properties) if required is None else required,
            "properties": properties}
