"""Engines configured for an event store.

SQLite: WAL (readers never block the writer), ``synchronous = FULL`` (said, not left
to the build's default), a busy timeout, foreign keys, and
SQLAlchemy (not pysqlite) emitting BEGIN, so that writers can ask for
``BEGIN IMMEDIATE``: the write lock is taken up front and waits for the busy
timeout, instead of a deferred transaction failing when it upgrades to a writer.

PostgreSQL: psycopg 3, a connect timeout, and ``lock_timeout`` set to the same
busy timeout, so "locked for too long" means the same on both backends.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from kodr_core.errors import StoreUnavailable

#: Execution option that makes a connection's next BEGIN an IMMEDIATE one on SQLite.
WRITE = "kodr_write"

#: SQLite's safety level for every commit an event is in (only blobs commit with less:
#: see :meth:`store.event_store.EventStore.put_blobs`).
DURABLE = "FULL"

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CONNECT_TIMEOUT_S = 10


def _is_memory(url: sa.URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def make_engine(url: str | sa.URL, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sa.Engine:
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms)
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url, busy_timeout_ms)
    raise StoreUnavailable(
        f"unsupported database URL {url.render_as_string(hide_password=True)}: kodr keeps its "
        "store in SQLite (sqlite:///PATH) or PostgreSQL (postgresql://...)"
    )


def _sqlite_engine(url: sa.URL, busy_timeout_ms: int) -> sa.Engine:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_ms / 1000}}
    if _is_memory(url):  # one shared connection, or every checkout is a new empty DB
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    engine = sa.create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if not _is_memory(url):
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute(f"PRAGMA synchronous = {DURABLE}")  # each commit fsyncs the WAL
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: sa.URL, busy_timeout_ms: int) -> sa.Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute(f"SET lock_timeout = {int(busy_timeout_ms)}")
        dbapi_connection.commit()

    return engine
