"""Tables of outgoing webhooks: subscriptions, their deliveries (the durable work rows the
dispatcher claims), and how far the fan-out has read the contacts' timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class WebhookSubscription(WorkspaceOwned, Base):
    """An address that receives the events it asked for, signed with its own secret."""

    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[dict[str, Any]]  # {"events": [...]}: JSON object so both databases agree
    description: Mapped[str] = mapped_column(String(500), default="")
    sealed_secret: Mapped[str] = mapped_column(Text)  # sealed with the installation's key
    active: Mapped[bool] = mapped_column(default=True)
    origin: Mapped[str] = mapped_column(String(16), default="api")  # api | rest_hook
    retries: Mapped[int] = mapped_column(default=3)
    retry_interval_seconds: Mapped[int] = mapped_column(default=300)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # The newest timeline event when it was made: it receives what happens after, not before.
    after_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(WorkspaceOwned, Base):
    """One event for one subscription: pending until delivered or dead (X3)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "state", "created_at"),
    )

    subscription_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int | None]
    replays: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookFeedPosition(Base):
    """How far the fan-out has read the contacts' timeline."""

    __tablename__ = "webhook_event_feed"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
