"""kodr's append-only event store on SQLAlchemy: SQLite by default, PostgreSQL for workers.

Start from :func:`open_store` with :func:`database_url` of a workspace.
"""

from store.database import database_url, default_url, normalise_url, open_store, upgrade
from store.errors import BlobNotFound
from store.event_store import EventStore
from store.hashchain import ChainReport, verify_chain
from store.leases import Lease, is_local_owner_dead, owner_id

__all__ = [
    "BlobNotFound",
    "ChainReport",
    "EventStore",
    "Lease",
    "database_url",
    "default_url",
    "is_local_owner_dead",
    "normalise_url",
    "open_store",
    "owner_id",
    "upgrade",
    "verify_chain",
]
