"""The runs projection keeps the hash of the run's last event.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

An append reads the run's state, last seq and last hash from its ``runs`` row in
one query, instead of re-reading and re-folding the whole history, so the cost of
an append no longer grows with the run. Existing rows are filled from the events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("last_hash", sa.CHAR(64), nullable=True))
    op.execute(
        "UPDATE runs SET last_hash = (SELECT e.hash FROM events e "
        "WHERE e.run_id = runs.run_id AND e.seq = runs.last_seq)"
    )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("last_hash")
