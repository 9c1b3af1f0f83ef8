"""experiment groups, depends_on and the waiting status

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import orchestrator.models.types

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE experimentstatus ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'queued'")
    op.create_table(
        "experiment_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("compare", sa.JSON(), nullable=False),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("experiment_group", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_group_owner_id"), ["owner_id"], unique=False
        )

    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_experiment_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_experiment_group_id", "experiment_group", ["group_id"], ["id"]
        )

    op.create_table(
        "experiment_dependency",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("depends_on_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["depends_on_id"], ["experiment.id"]),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiment.id"]),
        sa.PrimaryKeyConstraint("experiment_id", "depends_on_id"),
    )
    with op.batch_alter_table("experiment_dependency", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_dependency_depends_on_id"), ["depends_on_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_dependency", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_dependency_depends_on_id"))
    op.drop_table("experiment_dependency")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_constraint("fk_experiment_group_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_experiment_group_id"))
        batch_op.drop_column("group_id")
    with op.batch_alter_table("experiment_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_group_owner_id"))
    op.drop_table("experiment_group")
    # Postgres cannot drop a value from an enum type; 'waiting' stays, unused.
