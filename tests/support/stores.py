"""Store helpers shared by the integration tests: which backend, and another writer holding the lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from store.event_store import EventStore


def is_pg(store_or_url: EventStore | str) -> bool:
    url = store_or_url.url if isinstance(store_or_url, EventStore) else store_or_url
    return sa.make_url(url).get_backend_name() == "postgresql"


@contextmanager
def write_locked(url: str) -> Iterator[None]:
    """Another connection holds the store's write lock (PostgreSQL: the events table) until exit."""
    if is_pg(url):
        blocker = sa.create_engine(url)
        conn = blocker.connect()
        conn.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
            blocker.dispose()
    else:
        raw = sqlite3.connect(sa.make_url(url).database, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.rollback()
            raw.close()
