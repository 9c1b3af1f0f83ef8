"""admin web page: metric history per attempt, draining workers

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("recorded_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempt.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_sample_attempt_id", "metric_sample", ["attempt_id", "id"])
    with op.batch_alter_table("worker") as batch_op:
        batch_op.add_column(
            sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("worker") as batch_op:
        batch_op.drop_column("draining")
    op.drop_index("ix_metric_sample_attempt_id", table_name="metric_sample")
    op.drop_table("metric_sample")
