"""runner bundles: the native runner (and the libraries it loads) registered per CPU ABI

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runner_bundles",
        sa.Column("abi", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("abi", name=op.f("pk_runner_bundles")),
    )


def downgrade() -> None:
    op.drop_table("runner_bundles")
