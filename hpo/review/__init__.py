"""The review layer: reads studies, never runs or changes them.

Modules: ``_evidence`` (one reading of a study) -> ``sections`` (the table of report sections:
builder, schema fragment, tables, figures) -> ``_report`` (one JSON-ready dict) -> ``_render``
(text, Markdown, HTML); ``_compare``, ``_export`` (files to retrain, and reading them back),
``_status``, ``_table`` (the top table), ``_dashboard``, ``_format`` (every table's
formatting). The package imports nothing itself, so
``hpo status`` and ``hpo report`` never load torch.
"""
