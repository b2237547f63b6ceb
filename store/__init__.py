"""kodr's append-only event store on SQLAlchemy: SQLite by default, PostgreSQL for workers.

Start from :func:`open_store` with :func:`database_url` of a workspace.
"""

from importlib import import_module
from typing import Any

_HOME = {
    "database_url": "store.database",
    "default_url": "store.database",
    "normalise_url": "store.database",
    "open_store": "store.database",
    "upgrade": "store.database",
    "BlobNotFound": "store.errors",
    "EventStore": "store.event_store",
    "DriverReader": "store.reader",
    "StoreReader": "store.reader",
    "ChainReport": "store.hashchain",
    "verify_chain": "store.hashchain",
    "Lease": "store.leases",
    "is_local_owner_dead": "store.leases",
    "owner_id": "store.leases",
}


def __getattr__(name: str) -> Any:
    """Names are imported on first use, so ``import store.x`` does not import every module (start-up)."""
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")


__all__ = [
    "BlobNotFound",
    "ChainReport",
    "DriverReader",
    "EventStore",
    "Lease",
    "database_url",
    "default_url",
    "is_local_owner_dead",
    "normalise_url",
    "open_store",
    "owner_id",
    "StoreReader",
    "upgrade",
    "verify_chain",
]
