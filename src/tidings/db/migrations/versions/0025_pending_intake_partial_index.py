"""The intake's pending index holds only the rows still to do (#23).

A claim takes the next pending rows in id order. The full ``(processed_at, id)`` index kept
an entry per processed row until a vacuum, and PostgreSQL's bitmap scan of it visited them
all: a claim cost grew with every update ever received (90 ms per claim at 60,000 rows).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "processed_at IS NULL AND quarantined_at IS NULL"


def upgrade() -> None:
    op.drop_index("ix_whatsapp_inbound_events_pending", table_name="whatsapp_inbound_events")
    op.create_index(
        "ix_whatsapp_inbound_events_pending",
        "whatsapp_inbound_events",
        ["id"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_whatsapp_inbound_events_pending", table_name="whatsapp_inbound_events")
    op.create_index(
        "ix_whatsapp_inbound_events_pending", "whatsapp_inbound_events", ["processed_at", "id"]
    )
