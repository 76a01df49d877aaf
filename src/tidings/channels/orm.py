"""Tables of channels: the WhatsApp numbers a workspace sends and receives on (I2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class WhatsAppNumber(WorkspaceOwned, Base):
    """One WhatsApp Business number; its secrets are stored sealed, never in clear."""

    __tablename__ = "whatsapp_numbers"

    name: Mapped[str] = mapped_column(String(200))
    phone_number_id: Mapped[str] = mapped_column(String(64), unique=True)
    business_account_id: Mapped[str] = mapped_column(String(64))
    display_phone_number: Mapped[str] = mapped_column(String(20))
    api_base_url: Mapped[str] = mapped_column(String(500))
    api_version: Mapped[str] = mapped_column(String(16))
    access_token_sealed: Mapped[str] = mapped_column(Text)
    app_secret_sealed: Mapped[str] = mapped_column(Text)
    verify_token_sealed: Mapped[str] = mapped_column(Text)
    webhook_key: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Meta's throughput tier of this number (80 messages/s by default, 1,000 once upgraded);
    # None: the workspace's default (P6).
    throughput_per_second: Mapped[float | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WhatsAppWebhookDelivery(WorkspaceOwned, Base):
    """One signed webhook POST exactly as received, stored before it is answered.

    Splitting it into updates (and dropping Meta's duplicates) happens in the worker, so the
    endpoint only checks the signature, checks the JSON and writes one row: answering fast is
    what keeps Meta from retrying (and the shop from losing messages).
    """

    __tablename__ = "whatsapp_webhook_deliveries"
    __table_args__ = (Index("ix_whatsapp_webhook_deliveries_pending", "split_at", "id"),)

    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    split_at: Mapped[datetime | None]
    updates: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WhatsAppInboundEvent(WorkspaceOwned, Base):
    """One inbound update, stored once per key before the webhook is answered.

    The worker turns pending rows into contacts, conversations and message states after the
    commit, so the webhook answers fast and nothing received is lost. An update that cannot be
    understood, or still fails after its retries, is *quarantined* (``quarantined_at`` with
    ``last_error``): kept as received, listed to admins, and processed again on replay.
    """

    __tablename__ = "whatsapp_inbound_events"
    __table_args__ = (
        UniqueConstraint("number_id", "event_key"),
        # Only the rows still to do, in order: a claim reads the next 500 from it and never
        # walks the processed ones (on PostgreSQL, a bitmap scan of a full index visited
        # every processed row's dead entry, and a claim slowed with the table's size).
        Index(
            "ix_whatsapp_inbound_events_pending",
            "id",
            sqlite_where=sql_text("processed_at IS NULL AND quarantined_at IS NULL"),
            postgresql_where=sql_text("processed_at IS NULL AND quarantined_at IS NULL"),
        ),
        Index("ix_whatsapp_inbound_events_quarantined", "workspace_id", "quarantined_at"),
    )

    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    event_key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    quarantined_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
