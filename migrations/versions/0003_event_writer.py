"""Who wrote each event: the lease owner (worker) and the lease epoch it held.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Nullable: events appended without a lease (a run's ``RunRequested``, histories
from before this revision) have no writer. The columns sit beside the hashed body,
not in it, so existing chains verify unchanged; the append-only triggers keep them
from being edited after the fact.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("writer", sa.String(255), nullable=True))
    op.add_column("events", sa.Column("lease_epoch", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("lease_epoch")
        batch.drop_column("writer")
