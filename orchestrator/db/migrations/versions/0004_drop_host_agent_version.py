"""hosts.agent_version dropped: nothing ever wrote or read it (heartbeats carry no agent version)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite (the embedded database) drops a column by copying the table.
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("agent_version")


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agent_version", sa.String(length=32), nullable=False, server_default="")
        )
