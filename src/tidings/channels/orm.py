"""Tables of channels: the WhatsApp numbers a workspace sends and receives on (I2)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, WorkspaceOwned


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
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
