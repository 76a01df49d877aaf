"""web sessions; indexes of the live inbox feed

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 07:44:24.958499
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", tidings.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_web_sessions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("digest", name=op.f("uq_web_sessions_digest")),
    )
    op.create_index(
        op.f("ix_web_sessions_workspace_id"), "web_sessions", ["workspace_id"], unique=False
    )
    op.create_index(
        "ix_conversations_changes", "conversations", ["workspace_id", "updated_at"], unique=False
    )
    op.create_index("ix_messages_changes", "messages", ["workspace_id", "updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_changes", table_name="messages")
    op.drop_index("ix_conversations_changes", table_name="conversations")
    op.drop_index(op.f("ix_web_sessions_workspace_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
