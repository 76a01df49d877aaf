"""Quarantine of webhook updates that cannot be understood or keep failing (issue #22).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.db.base

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("whatsapp_inbound_events") as batch:
        batch.add_column(
            sa.Column("quarantined_at", tidings.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index(
            "ix_whatsapp_inbound_events_quarantined", ["workspace_id", "quarantined_at"]
        )
    with op.batch_alter_table("whatsapp_webhook_deliveries") as batch:
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    # Updates given up before this revision were marked processed with their error: they
    # were failures nobody could see, so they join the quarantine (statuses of messages sent
    # by another tool were never failures, and stay as they are).
    op.execute(
        "UPDATE whatsapp_inbound_events SET quarantined_at = processed_at, processed_at = NULL "
        "WHERE last_error IS NOT NULL AND processed_at IS NOT NULL "
        "AND last_error NOT LIKE 'UnknownMessageError%'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE whatsapp_inbound_events SET processed_at = quarantined_at "
        "WHERE quarantined_at IS NOT NULL"
    )
    with op.batch_alter_table("whatsapp_webhook_deliveries") as batch:
        batch.drop_column("attempts")
    with op.batch_alter_table("whatsapp_inbound_events") as batch:
        batch.drop_index("ix_whatsapp_inbound_events_quarantined")
        batch.drop_column("quarantined_at")
