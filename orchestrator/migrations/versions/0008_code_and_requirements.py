"""experiments carry code (bundle or git) and requirements; attempts record the commit

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("requirements", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_commit", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_column("code_commit")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_column("requirements")
        batch_op.drop_column("code")
