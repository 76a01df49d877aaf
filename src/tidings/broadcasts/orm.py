"""Tables of broadcasts (P8). Each recipient's message lives in ``messages`` with the
broadcast's id: statistics are counts over them, and resuming is "recipients minus those
already queued" (their idempotency key is ``broadcast:<id>:<contact>``)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class Broadcast(WorkspaceOwned, Base):
    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_due", "status", "send_at"),)

    name: Mapped[str] = mapped_column(String(200))
    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(16))
    template: Mapped[dict[str, Any]]  # name, language, components (with field parameters)
    audience: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    send_at: Mapped[datetime]  # when planning starts (for local times: the earliest zone)
    local_date: Mapped[date | None]
    local_time: Mapped[time | None]
    # Batch mode (P6): recipients per batch and the gap between batches, 0 = one batch.
    batch_size: Mapped[int]
    batch_every_seconds: Mapped[int]
    plan_reason: Mapped[str | None] = mapped_column(String(300))
    planned_through: Mapped[int] = mapped_column(IdType, default=0)  # contact id cursor
    recipients: Mapped[int] = mapped_column(default=0)  # planned so far
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
