"""Renders a report dictionary (see :mod:`hpo.review._report`) as text, Markdown or HTML.

Every format shows the sections' tables (:data:`hpo.review.sections.SECTIONS`); HTML adds
their plotly figures and is one self-contained file (plotly.js inlined once), with PNG versions
of the figures (matplotlib) in a folder beside it, for papers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from hpo.review import sections
from hpo.review._evidence import Evidence
from hpo.review._format import fmt, markdown_table, text_table
from hpo.review.sections import Report, Titled


def tables(r: Report, only: tuple[str, ...] | None = None) -> list[Titled]:
    """The report as titled tables, in reading order; ``only`` picks sections by name."""
    return [titled for s in sections.SECTIONS if only is None or s.name in only
            for titled in s.tables(r)]


def _head(r: Report) -> str:
    return (f"study {r['study']} ({r['storage']}): {r['metric']}, {r['direction']}; best "
            f"{fmt(r['best']['value'])} (trial {r['best']['trial_number']})")


def to_text(r: Report, only: tuple[str, ...] | None = None) -> str:
    """The whole report, or only the sections named in ``only`` (without the head)."""
    parts = [f"Verdict: {r['verdict']}", _head(r)] if only is None else []
    for title, (headers, rows) in tables(r, only):
        parts.append(f"\n{title}\n" + text_table(headers, rows))
    return "\n".join(parts) + "\n"


def to_markdown(r: Report) -> str:
    parts = [f"# Study `{r['study']}`\n\n**Verdict:** {r['verdict']}\n\n{_head(r)}"]
    for title, (headers, rows) in tables(r):
        parts.append(f"## {title}\n\n{markdown_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"


def to_json(r: Report) -> str:
    return json.dumps(r, indent=2, sort_keys=False) + "\n"


def to_html(r: Report, e: Evidence, out: Path | None) -> str:
    """One self-contained page; PNG figures go to ``<out stem>_figures/`` when ``out`` is set.

    ``e`` is the reading of the study the report was built from, so figures and tables show
    the same trials. plotly.js is inlined once, in the page head; every figure after it only
    carries its data.
    """
    from plotly.offline import get_plotlyjs

    parts = [f"<h1>Study {html.escape(r['study'])}</h1>",
             f"<p class='verdict'><b>Verdict:</b> {html.escape(r['verdict'])}</p>",
             f"<p>{html.escape(_head(r))}</p>"]
    for s in sections.SECTIONS:
        for title, fig in s.figures(r, e):
            parts.append(f"<h2>{html.escape(title)}</h2>" +
                         fig.to_html(full_html=False, include_plotlyjs=False))
    for title, (headers, rows) in tables(r):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    if out is not None:
        folder = out.parent / f"{out.stem}_figures"
        folder.mkdir(parents=True, exist_ok=True)
        for s in sections.SECTIONS:
            s.pngs(r, folder)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             ".verdict{font-size:1.15em;background:#f3f6fa;padding:0.6em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hpo report: "
            f"{html.escape(r['study'])}</title><style>{style}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            + "\n".join(parts) + "</body></html>\n")
