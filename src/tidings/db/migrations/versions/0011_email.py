"""e-mail: sender identities, templates, suppressions; messages of every channel

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 06:51:04.420051
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.db.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_senders",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("smtp_host", sa.String(length=255), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_security", sa.String(length=16), nullable=False),
        sa.Column("smtp_username", sa.String(length=320), nullable=True),
        sa.Column("smtp_password_sealed", sa.Text(), nullable=True),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("dkim_domain", sa.String(length=255), nullable=True),
        sa.Column("dkim_selector", sa.String(length=63), nullable=True),
        sa.Column("dkim_key_sealed", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
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
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_senders_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_senders")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_email_senders_workspace_id_name")
        ),
    )
    op.create_index(
        op.f("ix_email_senders_workspace_id"), "email_senders", ["workspace_id"], unique=False
    )
    op.create_table(
        "email_templates",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
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
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_templates_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_templates")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_email_templates_workspace_id_name")
        ),
    )
    op.create_index(
        op.f("ix_email_templates_workspace_id"), "email_templates", ["workspace_id"], unique=False
    )
    op.create_table(
        "email_suppressions",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
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
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_email_suppressions_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_suppressions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_suppressions")),
        sa.UniqueConstraint(
            "workspace_id", "address", name=op.f("uq_email_suppressions_workspace_id_address")
        ),
    )
    op.create_index(
        op.f("ix_email_suppressions_workspace_id"),
        "email_suppressions",
        ["workspace_id"],
        unique=False,
    )
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), server_default="whatsapp", nullable=False)
        )
        batch_op.add_column(sa.Column("sender_id", id_type, nullable=True))
        batch_op.alter_column("conversation_id", existing_type=id_type, nullable=True)
        batch_op.alter_column("number_id", existing_type=id_type, nullable=True)
        batch_op.alter_column(
            "recipient",
            existing_type=sa.String(length=64),
            type_=sa.String(length=320),
            existing_nullable=True,
        )
        batch_op.drop_index("ix_messages_dispatch")
        batch_op.create_index(
            "ix_messages_dispatch", ["channel", "status", "next_attempt_at"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_sender_id_email_senders"),
            "email_senders",
            ["sender_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.execute("DELETE FROM messages WHERE channel <> 'whatsapp'")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_messages_sender_id_email_senders"), type_="foreignkey"
        )
        batch_op.drop_index("ix_messages_dispatch")
        batch_op.create_index("ix_messages_dispatch", ["status", "next_attempt_at"], unique=False)
        batch_op.alter_column(
            "recipient",
            existing_type=sa.String(length=320),
            type_=sa.String(length=64),
            existing_nullable=True,
        )
        batch_op.alter_column("number_id", existing_type=id_type, nullable=False)
        batch_op.alter_column("conversation_id", existing_type=id_type, nullable=False)
        batch_op.drop_column("sender_id")
        batch_op.drop_column("channel")
    op.drop_index(op.f("ix_email_suppressions_workspace_id"), table_name="email_suppressions")
    op.drop_table("email_suppressions")
    op.drop_index(op.f("ix_email_templates_workspace_id"), table_name="email_templates")
    op.drop_table("email_templates")
    op.drop_index(op.f("ix_email_senders_workspace_id"), table_name="email_senders")
    op.drop_table("email_senders")
