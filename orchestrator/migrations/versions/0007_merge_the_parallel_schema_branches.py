"""merge the parallel schema branches (web, logs, platforms, groups) into one head

Revision ID: 0007
Revises: 0002, 0003, 0004, 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | tuple[str, ...] | None = ("0002", "0003", "0004", "0006")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
