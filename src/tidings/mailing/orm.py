"""Tables of e-mail. The messages themselves are rows of ``messages`` (channel ``email``): one
outbox, one sending policy and one trace for every channel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class EmailSender(WorkspaceOwned, Base):
    """An identity the workspace sends from, and the SMTP server that carries it. The
    password and the DKIM private key are sealed like the WhatsApp secrets."""

    __tablename__ = "email_senders"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    from_name: Mapped[str] = mapped_column(String(200))
    from_address: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int]
    smtp_security: Mapped[str] = mapped_column(String(16))  # none | starttls | tls
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    smtp_password_sealed: Mapped[str | None] = mapped_column(Text)
    connections: Mapped[int] = mapped_column(default=4)
    dkim_domain: Mapped[str | None] = mapped_column(String(255))
    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_key_sealed: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EmailTemplate(WorkspaceOwned, Base):
    """Subject, HTML and plain-text bodies in the Jinja sandbox (A6)."""

    __tablename__ = "email_templates"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)  # generated from the HTML when absent
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EmailSuppression(WorkspaceOwned, Base):
    """An address that bounced permanently: later sends to it are skipped with this reason."""

    __tablename__ = "email_suppressions"
    __table_args__ = (UniqueConstraint("workspace_id", "address"),)

    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(500))
    smtp_code: Mapped[int | None]
    message_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("messages.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime]
