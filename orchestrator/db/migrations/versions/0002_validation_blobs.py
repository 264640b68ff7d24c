"""validation blobs: a validation job's input tensors and host-computed reference outputs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:01:36.211521
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validation_blobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=160), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_validation_blobs_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_blobs")),
        sa.UniqueConstraint("job_id", "name", name=op.f("uq_validation_blobs_job_id_name")),
    )
    with op.batch_alter_table("validation_blobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_validation_blobs_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("validation_blobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_validation_blobs_job_id"))

    op.drop_table("validation_blobs")
