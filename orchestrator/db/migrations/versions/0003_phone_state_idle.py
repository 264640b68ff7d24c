"""phone states: a phone doing nothing is 'idle' (it was stored as 'online' before hexfleet.states)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE devices SET state = 'idle' WHERE state = 'online'")


def downgrade() -> None:
    op.execute("UPDATE devices SET state = 'online' WHERE state = 'idle'")
