"""The event store: events, blobs, the runs projection, and append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

The tables are spelled out here, not imported from ``store.schema``, so this
revision keeps meaning the same schema whatever the code becomes later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_TRIGGERS = {
    "events_no_update": "UPDATE",
    "events_no_delete": "DELETE",
}

_PG_FUNCTION = """
CREATE FUNCTION kodr_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""

_PG_TRIGGERS = {
    "events_no_update": "BEFORE UPDATE ON events FOR EACH ROW",
    "events_no_delete": "BEFORE DELETE ON events FOR EACH ROW",
    "events_no_truncate": "BEFORE TRUNCATE ON events FOR EACH STATEMENT",
}


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.CHAR(64), nullable=False),
        sa.Column("hash", sa.CHAR(64), nullable=False),
        sa.UniqueConstraint("run_id", "seq", name="uq_events_run_seq"),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.CHAR(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "runs",
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
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_expires_at", sa.Double),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name, operation in _SQLITE_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON events "
                "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for name, when in _PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION kodr_events_append_only()")
    else:
        raise NotImplementedError(f"kodr's store supports SQLite and PostgreSQL, not {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    elif dialect == "postgresql":
        for name in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON events")
        op.execute("DROP FUNCTION IF EXISTS kodr_events_append_only()")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_table("runs")
    op.drop_table("blobs")
    op.drop_table("events")
