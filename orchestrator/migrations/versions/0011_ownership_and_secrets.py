"""worker tokens belong to a user; pools share them; per-user secrets, named by experiments

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("worker_token") as batch_op:
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_worker_token_owner_id", ["owner_id"])
        batch_op.create_foreign_key("fk_worker_token_owner_id_user", "user", ["owner_id"], ["id"])
    # Existing tokens belong to whoever made them, else to the first admin (the operator who
    # ran `baton tokens create` on the server), else to the first user.
    op.execute(
        """
        UPDATE worker_token SET owner_id = COALESCE(
            created_by_id,
            (SELECT MIN(id) FROM "user" WHERE role = 'admin'),
            (SELECT MIN(id) FROM "user")
        )
        """
    )

    with op.batch_alter_table("experiment") as batch_op:
        batch_op.add_column(sa.Column("secrets", sa.JSON(), server_default="[]", nullable=False))

    op.create_table(
        "pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pool_name", "pool", ["name"], unique=True)
    op.create_table(
        "pool_user",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pool.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("pool_id", "user_id"),
    )
    op.create_index("ix_pool_user_user_id", "pool_user", ["user_id"])
    op.create_table(
        "pool_token",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pool.id"]),
        sa.ForeignKeyConstraint(["token_id"], ["worker_token.id"]),
        sa.PrimaryKeyConstraint("pool_id", "token_id"),
    )
    op.create_index("ix_pool_token_token_id", "pool_token", ["token_id"])

    op.create_table(
        "user_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", orchestrator.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name", name="uq_user_secret_name"),
    )
    op.create_index("ix_user_secret_user_id", "user_secret", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_secret_user_id", table_name="user_secret")
    op.drop_table("user_secret")
    op.drop_index("ix_pool_token_token_id", table_name="pool_token")
    op.drop_table("pool_token")
    op.drop_index("ix_pool_user_user_id", table_name="pool_user")
    op.drop_table("pool_user")
    op.drop_index("ix_pool_name", table_name="pool")
    op.drop_table("pool")
    with op.batch_alter_table("experiment") as batch_op:
        batch_op.drop_column("secrets")
    with op.batch_alter_table("worker_token") as batch_op:
        batch_op.drop_constraint("fk_worker_token_owner_id_user", type_="foreignkey")
        batch_op.drop_index("ix_worker_token_owner_id")
        batch_op.drop_column("owner_id")
