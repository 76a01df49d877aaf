"""Tables of messaging: the inbox (I1–I4) — conversations, messages in both directions, notes,
labels, quick replies — and the trace of every send decision (O3).

An outbound message row is also the outbox row the dispatcher claims: one row from
``queue_message`` to the last delivery status, so a message can never exist in the thread
without being dispatched, or be dispatched without being in the thread.

Every channel shares the table (``channel``): the sending policy counts one history across
channels (P4) and sequences count one set of step statistics. A WhatsApp message has its
number and conversation; an e-mail has its sender identity instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, JsonType, WorkspaceOwned, workspace_through_parent


class Conversation(WorkspaceOwned, Base):
    """Everything said between one contact and one of our numbers (I2)."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("number_id", "contact_id"),
        # A contact's conversations over all numbers: the window, the I3 pause, history.
        Index("ix_conversations_contact", "contact_id"),
        Index("ix_conversations_inbox", "workspace_id", "status", "last_message_at"),
        Index("ix_conversations_assignee", "workspace_id", "assignee_id", "status"),
        # The web app's live feed asks "what changed lately in this workspace?" every second.
        Index("ix_conversations_changes", "workspace_id", "updated_at"),
    )

    workspace_id: Mapped[int] = workspace_through_parent()
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16))
    snoozed_until: Mapped[datetime | None]
    assignee_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    team_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("teams.id", ondelete="SET NULL"))
    last_inbound_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]
    last_outbound_sent_at: Mapped[datetime | None]
    last_human_reply_at: Mapped[datetime | None]
    automation_paused_until: Mapped[datetime | None]
    unread_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Message(WorkspaceOwned, Base):
    """One message of a conversation. Outbound rows carry their dispatch state (the outbox)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("number_id", "provider_message_id"),
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_messages_thread", "conversation_id", "id"),
        Index("ix_messages_changes", "workspace_id", "updated_at"),
        Index("ix_messages_dispatch", "channel", "status", "next_attempt_at"),
        Index("ix_messages_contact", "contact_id", "direction", "created_at"),
        # The sending policy's history of a contact (P2-P4): what went out, and when.
        # Partial: a message enters them when it goes out, so queueing a million (a
        # broadcast) does not pay for them, and the dispatcher, paced anyway, does.
        Index(
            "ix_messages_contact_dispatched",
            "contact_id",
            "dispatched_at",
            sqlite_where=sql_text("dispatched_at IS NOT NULL"),
            postgresql_where=sql_text("dispatched_at IS NOT NULL"),
        ),
        # A number's daily quota and the portfolio's messaging tier (P6).
        Index(
            "ix_messages_number_dispatched",
            "number_id",
            "dispatched_at",
            sqlite_where=sql_text("dispatched_at IS NOT NULL"),
            postgresql_where=sql_text("dispatched_at IS NOT NULL"),
        ),
        Index("ix_messages_broadcast", "broadcast_id", "status"),
        # The messaging tier: who was reached outside their window today (P6).
        Index(
            "ix_messages_outside_window",
            "workspace_id",
            "dispatched_at",
            sqlite_where=sql_text("outside_window IS 1"),
            postgresql_where=sql_text("outside_window IS true"),
        ),
    )

    workspace_id: Mapped[int] = workspace_through_parent()
    channel: Mapped[str] = mapped_column(String(16), default="whatsapp", server_default="whatsapp")
    # WhatsApp only (None for e-mail).
    conversation_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    number_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    # E-mail only: the identity it is sent from.
    sender_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("email_senders.id", ondelete="SET NULL")
    )
    direction: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(24))
    text: Mapped[str | None] = mapped_column(Text)
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(200))
    # Outbound only: who and what asked for it, and the dispatcher's bookkeeping.
    origin: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str | None] = mapped_column(String(16))
    author_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    recipient: Mapped[str | None] = mapped_column(String(320))  # a phone, a WhatsApp id, an address
    resend_if_uncertain: Mapped[bool] = mapped_column(default=False)
    next_attempt_at: Mapped[datetime | None]
    # When the request of the current attempt left for the provider (committed just before
    # it did): after a crash, a ``sending`` row without it was certainly never sent.
    wire_at: Mapped[datetime | None]
    # The worker that claimed the current attempt: once its heartbeat is older than the lease,
    # another worker recovers the message (seconds, not the minutes an age rule needs).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[int | None]
    error_title: Mapped[str | None] = mapped_column(String(300))
    error_details: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(String(300))
    # What the sending policy compares (P3 same content, P4 same notification type).
    content_digest: Mapped[str | None] = mapped_column(String(32))
    notification_type: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None]  # first handed to the provider
    # What WhatsApp said it charged as (P9), and what that cost by the workspace's rate card.
    pricing_category: Mapped[str | None] = mapped_column(String(32))
    pricing_type: Mapped[str | None] = mapped_column(String(32))
    cost: Mapped[float | None]
    cost_currency: Mapped[str | None] = mapped_column(String(3))
    broadcast_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("broadcasts.id", ondelete="SET NULL")
    )
    # Sent while the contact's window was closed: counts toward the messaging tier (P6).
    outside_window: Mapped[bool | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ConversationNote(WorkspaceOwned, Base):
    """A private note agents leave on a conversation; never sent to the contact."""

    __tablename__ = "conversation_notes"
    __table_args__ = (Index("ix_conversation_notes_thread", "conversation_id", "id"),)

    conversation_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    author_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    author_label: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class ConversationLabel(WorkspaceOwned, Base):
    __tablename__ = "conversation_labels"
    __table_args__ = (
        UniqueConstraint("conversation_id", "label"),
        Index("ix_conversation_labels_label", "workspace_id", "label"),
    )

    conversation_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(String(64))


class QuickReply(WorkspaceOwned, Base):
    """A canned answer agents insert by shortcut, with variables (I4)."""

    __tablename__ = "quick_replies"
    __table_args__ = (UniqueConstraint("workspace_id", "shortcut"),)

    shortcut: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SendTrace(WorkspaceOwned, Base):
    """Why a message was queued, deferred, skipped, retried, sent or failed (O3), with the
    requirement ID in the reason."""

    __tablename__ = "send_traces"
    __table_args__ = (
        Index("ix_send_traces_message", "message_id", "id"),
        Index("ix_send_traces_contact", "contact_id", "at"),
    )

    workspace_id: Mapped[int] = workspace_through_parent()
    message_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("messages.id", ondelete="CASCADE")
    )
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    provider_code: Mapped[int | None]
    at: Mapped[datetime]


class MessageTemplate(WorkspaceOwned, Base):
    """A WhatsApp message template of one number's business account: synced from the
    provider (with its approval status) or defined here."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("number_id", "name", "language"),)

    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    components: Mapped[list[Any]] = mapped_column(JsonType)
    source: Mapped[str] = mapped_column(String(8))  # "synced" or "local"
    provider_id: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class NumberPacing(Base):
    """The next free send slot of a WhatsApp number, shared by every worker on every host:
    each claim reserves its slots here, so together they stay under the number's throughput.
    Seconds since the epoch, on the workers' clocks (pacing is about the provider's real time,
    not the workspace's)."""

    __tablename__ = "number_pacing"

    number_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("whatsapp_numbers.id", ondelete="CASCADE"), primary_key=True
    )
    next_slot: Mapped[float]
