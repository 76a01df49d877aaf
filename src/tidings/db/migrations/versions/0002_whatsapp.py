"""whatsapp numbers and inbound events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:29:20.290931
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tidings.db.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "whatsapp_numbers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("business_account_id", sa.String(length=64), nullable=False),
        sa.Column("display_phone_number", sa.String(length=20), nullable=False),
        sa.Column("api_base_url", sa.String(length=500), nullable=False),
        sa.Column("api_version", sa.String(length=16), nullable=False),
        sa.Column("access_token_sealed", sa.Text(), nullable=False),
        sa.Column("app_secret_sealed", sa.Text(), nullable=False),
        sa.Column("verify_token_sealed", sa.Text(), nullable=False),
        sa.Column("webhook_key", sa.String(length=64), nullable=False),
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
            name=op.f("fk_whatsapp_numbers_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_numbers")),
        sa.UniqueConstraint("phone_number_id", name=op.f("uq_whatsapp_numbers_phone_number_id")),
        sa.UniqueConstraint("webhook_key", name=op.f("uq_whatsapp_numbers_webhook_key")),
    )
    with op.batch_alter_table("whatsapp_numbers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_whatsapp_numbers_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "whatsapp_inbound_events",
        sa.Column(
            "number_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", tidings.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
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
            ["number_id"],
            ["whatsapp_numbers.id"],
            name=op.f("fk_whatsapp_inbound_events_number_id_whatsapp_numbers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_whatsapp_inbound_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_inbound_events")),
        sa.UniqueConstraint(
            "number_id", "event_key", name=op.f("uq_whatsapp_inbound_events_number_id_event_key")
        ),
    )
    with op.batch_alter_table("whatsapp_inbound_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_whatsapp_inbound_events_pending", ["processed_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_whatsapp_inbound_events_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("whatsapp_inbound_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_whatsapp_inbound_events_workspace_id"))
        batch_op.drop_index("ix_whatsapp_inbound_events_pending")

    op.drop_table("whatsapp_inbound_events")
    with op.batch_alter_table("whatsapp_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_whatsapp_numbers_workspace_id"))

    op.drop_table("whatsapp_numbers")
