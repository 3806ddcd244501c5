"""What a worker on a database storage imports when it opens that storage, imported once by the
fork server of a pool whose storage is a database (see :func:`hpo.worker._pool.worker_context`).

Optuna imports these lazily, on a storage's first use: SQLAlchemy's ORM and dialects, Optuna's
table models, Alembic (Optuna stamps and checks the schema's version with it, which brings Mako
and Pygments) and the PostgreSQL driver; about 0.9 s of CPU on the 2-core machine, which every
worker paid again. A journal file's pool does without them.
"""

import alembic.command  # noqa: F401
import alembic.config  # noqa: F401
import alembic.migration  # noqa: F401
import alembic.script  # noqa: F401
import optuna.storages._rdb.models  # noqa: F401
import psycopg2.extras  # noqa: F401  (what SQLAlchemy's dialect imports on connecting)
import sqlalchemy.dialects.mysql  # noqa: F401
import sqlalchemy.dialects.postgresql  # noqa: F401
import sqlalchemy.dialects.sqlite  # noqa: F401
import sqlalchemy.orm  # noqa: F401
