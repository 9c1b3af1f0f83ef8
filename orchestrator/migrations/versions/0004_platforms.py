"""platforms: worker accounts and session start, GPU usage per week, quotas, Kaggle launches

Revision ID: 0004
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_WHERE = sa.text("finished_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("worker") as batch_op:
        batch_op.add_column(
            sa.Column("account", sa.String(length=100), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("session_started_at", orchestrator.models.types.UTCDateTime(), nullable=True)
        )

    op.create_table(
        "gpu_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("busy_seconds", sa.Float(), nullable=False),
        sa.Column("updated_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["worker_id"], ["worker.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("worker_id", "week", name="uq_gpu_usage_worker_week"),
    )
    op.create_index("ix_gpu_usage_worker_id", "gpu_usage", ["worker_id"])
    op.create_index("ix_gpu_usage_week", "gpu_usage", ["week"])

    op.create_table(
        "platform_quota",
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=100), nullable=False),
        sa.Column("used_seconds", sa.Float(), nullable=True),
        sa.Column("allowed_seconds", sa.Float(), nullable=True),
        sa.Column("resets_at", orchestrator.models.types.UTCDateTime(), nullable=True),
        sa.Column("fetched_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("error", sa.String(length=4000), nullable=True),
        sa.Column("low_notified_at", orchestrator.models.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("platform", "account"),
    )

    op.create_table(
        "kaggle_launch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("need_key", sa.String(length=200), nullable=False),
        sa.Column("kernel_slug", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=4000), nullable=True),
        sa.Column("experiment_ids", sa.JSON(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", orchestrator.models.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kaggle_launch_need_key", "kaggle_launch", ["need_key"])
    op.create_index(
        "uq_kaggle_launch_live",
        "kaggle_launch",
        ["need_key"],
        unique=True,
        sqlite_where=LIVE_WHERE,
        postgresql_where=LIVE_WHERE,
    )


def downgrade() -> None:
    op.drop_index("uq_kaggle_launch_live", table_name="kaggle_launch")
    op.drop_index("ix_kaggle_launch_need_key", table_name="kaggle_launch")
    op.drop_table("kaggle_launch")
    op.drop_table("platform_quota")
    op.drop_index("ix_gpu_usage_week", table_name="gpu_usage")
    op.drop_index("ix_gpu_usage_worker_id", table_name="gpu_usage")
    op.drop_table("gpu_usage")
    with op.batch_alter_table("worker") as batch_op:
        batch_op.drop_column("session_started_at")
        batch_op.drop_column("account")
