"""Shared fixtures.

Store backends: ``store`` and ``db_url`` are parametrised over SQLite (a real file
in tmp_path) and PostgreSQL (a fresh schema per test on the server named by
``KODR_TEST_POSTGRES_URL``). An unreachable PostgreSQL skips its half of the suite
with the reason, unless ``KODR_REQUIRE_POSTGRES=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The test server's URL, once it has answered; skip (or fail if required) otherwise."""
    from store.database import normalise_url
    from store.errors import mask_url

    url = normalise_url(os.environ.get("KODR_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL))
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = f"PostgreSQL not reachable at {mask_url(url)} ({str(exc).splitlines()[0]}); set KODR_TEST_POSTGRES_URL"
        if os.environ.get("KODR_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (required by KODR_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_schema_url(postgres_admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped after the test."""
    schema = f"kodr_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(postgres_admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _backend_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'kodr.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty, unmigrated database on each backend."""
    return _backend_url(request, tmp_path)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path):
    """A migrated EventStore on each backend."""
    from store.database import open_store, upgrade

    url = _backend_url(request, tmp_path)
    upgrade(url)
    s = open_store(url)
    try:
        yield s
    finally:
        s.close()
