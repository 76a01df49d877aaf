"""Tables of contacts and everything hanging off them (C1), including the event timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, JsonType, WorkspaceOwned, workspace_through_parent


class Contact(WorkspaceOwned, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        # NULLs are distinct on both databases, so contacts without a phone/e-mail coexist.
        UniqueConstraint("workspace_id", "phone"),
        UniqueConstraint("workspace_id", "email"),
    )

    name: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    lifecycle_stage: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(default=0)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lead_source: Mapped[str | None] = mapped_column(String(64))
    do_not_contact: Mapped[bool] = mapped_column(default=False)
    # Derived from the contact's messages by automation (A7); never typed by a person.
    activity_score: Mapped[int] = mapped_column(default=0, server_default="0")
    sentiment: Mapped[float | None]
    churn_risk: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Tag(WorkspaceOwned, Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    name: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class ContactTag(Base):
    __tablename__ = "contact_tags"
    __table_args__ = (Index("ix_contact_tags_tag_contact", "tag_id", "contact_id"),)

    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime]


class ContactList(WorkspaceOwned, Base):
    __tablename__ = "contact_lists"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime]


class ListMembership(Base):
    __tablename__ = "list_memberships"
    __table_args__ = (Index("ix_list_memberships_contact", "contact_id"),)

    list_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contact_lists.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    joined_at: Mapped[datetime]


class CustomFieldDefinition(WorkspaceOwned, Base):
    __tablename__ = "custom_field_definitions"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    key: Mapped[str] = mapped_column(String(63))
    label: Mapped[str] = mapped_column(String(200))
    field_type: Mapped[str] = mapped_column(String(16))
    choices: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Consent(WorkspaceOwned, Base):
    """The current consent of one contact for one channel and purpose; history is in events."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("contact_id", "channel", "purpose"),)

    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


class ExternalId(WorkspaceOwned, Base):
    """The id a connected system (HubSpot, Shopify …) gives this contact."""

    __tablename__ = "contact_external_ids"
    __table_args__ = (
        UniqueConstraint("workspace_id", "system", "external_id"),
        UniqueConstraint("contact_id", "system"),
    )

    workspace_id: Mapped[int] = workspace_through_parent()
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))


class ContactAlias(WorkspaceOwned, Base):
    """Another phone, e-mail or external id by which a contact is known: what a merged
    contact brought that the survivor had its own of. Matching finds the contact by these too,
    so a customer writing from their second number reaches the one contact, with its consents.
    ``kind`` is ``phone``, ``email`` or ``external:<system>``."""

    __tablename__ = "contact_aliases"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "value"),)

    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(80))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]


class ContactEvent(WorkspaceOwned, Base):
    """One entry of the append-only timeline, with event time and ingestion time (S8)."""

    __tablename__ = "contact_events"
    __table_args__ = (
        Index("ix_contact_events_contact_type_time", "contact_id", "event_type", "occurred_at"),
        # contact_id last makes it covering: "who had event X N times in D" (segments,
        # audiences) reads the index alone, without a heap fetch per event.
        Index(
            "ix_contact_events_workspace_type_time",
            "workspace_id",
            "event_type",
            "occurred_at",
            "contact_id",
        ),
        UniqueConstraint("workspace_id", "idempotency_key"),
    )

    workspace_id: Mapped[int] = workspace_through_parent()
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(64))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # How many rule firings led here (0: the world did it); the rules' loop guard reads it.
    depth: Mapped[int] = mapped_column(default=0, server_default="0")


class ContactMerge(WorkspaceOwned, Base):
    """The audit entry of one merge (C3): who was merged into whom, why, by whom, and the
    journal of every row it moved, re-pointed, replaced or removed, which is what undoing it
    replays backwards."""

    __tablename__ = "contact_merges"
    __table_args__ = (Index("ix_contact_merges_survivor", "survivor_id"),)

    survivor_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    merged_id: Mapped[int] = mapped_column(IdType)  # gone after the merge
    reasons: Mapped[dict[str, Any]]
    journal: Mapped[dict[str, Any]]
    merged_by: Mapped[str] = mapped_column(String(200))
    merged_at: Mapped[datetime]
    undone_at: Mapped[datetime | None]
    restored_id: Mapped[int | None] = mapped_column(IdType)  # the merged contact, back


class ContactImport(WorkspaceOwned, Base):
    """A CSV file sent to be imported in the background: the file itself (compressed) until
    it is done, how far the worker has read, and what it did so far. Each batch of rows and
    the progress it made are committed together, so a worker that dies mid-file is followed
    by another that resumes at the next row: nothing is skipped, nothing counted twice."""

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_due", "status", "id"),)

    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed
    source: Mapped[str] = mapped_column(String(64))  # who sent it: api:<key>, web:<agent>
    file_name: Mapped[str | None] = mapped_column(String(200))
    column_map: Mapped[dict[str, Any]]
    body: Mapped[bytes | None] = mapped_column(LargeBinary)  # zlib; emptied once finished
    size_bytes: Mapped[int]
    offset: Mapped[int] = mapped_column(default=0)  # characters of the text read
    line: Mapped[int] = mapped_column(default=0)  # lines of the text read
    rows: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    problems: Mapped[list[Any]] = mapped_column(JsonType, default=list)  # the first ones
    warnings: Mapped[list[Any]] = mapped_column(JsonType, default=list)
    error: Mapped[str | None] = mapped_column(String(1000))  # why the file stopped
    error_field: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
