"""control plane identity: one row with a fresh UUID per database

Revision ID: 0009
Revises: 0008
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "control_plane",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("control_plane")
