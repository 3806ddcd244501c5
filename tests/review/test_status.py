"""``hpo status`` on a storage that other clients change while it reads."""

from __future__ import annotations

import optuna

from hpo.review._status import studies_table
from hpo.storage._backends import open_storage


def test_a_study_deleted_while_the_table_is_built_is_left_out(pg_url: str,
                                                              study_name: str) -> None:
    """Another client deletes a study between the listing and the reading of its trials (on a
    shared PostgreSQL, a colleague's ``optuna delete-study``): it was a KeyError and no table."""
    kept, gone = f"{study_name}-kept", f"{study_name}-gone"
    storage, other = open_storage(pg_url), open_storage(pg_url)
    for name in (kept, gone):
        optuna.create_study(study_name=name, storage=storage, direction="maximize")
    listed = storage.get_all_studies

    def listed_then_deleted() -> list:
        studies = listed()
        optuna.delete_study(study_name=gone, storage=other)  # the other client, right then
        return studies

    storage.get_all_studies = listed_then_deleted  # type: ignore[method-assign]
    try:
        table = studies_table(storage)
    finally:
        optuna.delete_study(study_name=kept, storage=other)
    assert kept in table and gone not in table
