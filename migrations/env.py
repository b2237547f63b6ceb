"""Alembic environment for the kodr store.

kodr itself passes an open connection in ``config.attributes["connection"]``
(see :mod:`store.database`), so the store's engine settings (SQLite busy
timeout, BEGIN IMMEDIATE) also apply while migrating. From the ``alembic`` CLI,
the URL comes from ``sqlalchemy.url`` in alembic.ini, else ``KODR_DATABASE_URL``,
else the SQLite file of the current directory's workspace.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from store.database import database_url, engine_for, normalise_url
from store.schema import metadata

config = context.config
if config.config_file_name and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = metadata


def _url() -> str:
    return normalise_url(config.get_main_option("sqlalchemy.url") or database_url(os.getcwd()))


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs via table copies
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_for(_url())  # SQLite: creates .kodr/ (with its .gitignore) first
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
