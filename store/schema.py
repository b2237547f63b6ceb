"""The store's tables, in SQLAlchemy Core.

Three tables, as the design says: ``events`` (the append-only source of truth),
``blobs`` (content-addressed bytes: prompts, responses, logs, file contents) and
``runs`` (a projection of the events plus the lease, always rebuildable).

The schema only changes through Alembic (``migrations/``); this module mirrors
the head revision so queries can be built from it. Timestamps of events are ISO
text, not a DB type, because they are part of the hashed canonical bytes and
must read back byte-for-byte on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa

from kodr_core.aggregate import PROJECTION_KEYS

metadata = sa.MetaData()

#: SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a bigint.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # canonical JSON, exactly as hashed
    sa.Column("prev_hash", sa.CHAR(64), nullable=False),
    sa.Column("hash", sa.CHAR(64), nullable=False),
    sa.Column("writer", sa.String(255)),  # the lease owner that appended it (0002)
    sa.Column("lease_epoch", sa.Integer),  # the lease epoch it held (0002)
    sa.UniqueConstraint("run_id", "seq", name="uq_events_run_seq"),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.CHAR(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("heal_turn", sa.Integer, nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(32)),
    sa.Column("reason", sa.String(64)),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("task", sa.Text, nullable=False, server_default=""),
    sa.Column("workspace", sa.Text, nullable=False, server_default=""),
    sa.Column("mode", sa.String(16), nullable=False, server_default="run"),
    sa.Column("created_at", sa.String(32)),
    sa.Column("updated_at", sa.String(32)),
    sa.Column("last_hash", sa.CHAR(64)),  # hash of the event at last_seq (revision 0002)
    sa.Column("lease_owner", sa.String(255)),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_expires_at", sa.Double),  # epoch seconds
    sa.Index("ix_runs_created_at", "created_at"),
)

#: The columns of ``runs`` that :func:`kodr_core.aggregate.project` computes: the fold's own list.
PROJECTION_COLUMNS: tuple[str, ...] = PROJECTION_KEYS
