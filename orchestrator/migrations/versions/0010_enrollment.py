"""enrollment codes, and worker tokens that expire with the session they were made for

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_token") as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", orchestrator.models.types.UTCDateTime(), nullable=True)
        )

    op.create_table(
        "enrollment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("launch_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("token_name", sa.String(length=100), nullable=False),
        sa.Column("session_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("used_at", orchestrator.models.types.UTCDateTime(), nullable=True),
        sa.Column("worker_token_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["launch_id"], ["kaggle_launch.id"]),
        sa.ForeignKeyConstraint(["created_by_id"], ["user.id"]),
        sa.ForeignKeyConstraint(["worker_token_id"], ["worker_token.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_enrollment_code_hash", "enrollment", ["code_hash"], unique=True)
    op.create_index("ix_enrollment_launch_id", "enrollment", ["launch_id"])


def downgrade() -> None:
    op.drop_index("ix_enrollment_launch_id", table_name="enrollment")
    op.drop_index("ix_enrollment_code_hash", table_name="enrollment")
    op.drop_table("enrollment")
    with op.batch_alter_table("worker_token") as batch_op:
        batch_op.drop_column("expires_at")
