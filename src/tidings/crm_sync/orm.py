"""Tables of CRM sync: connectors with their field mapping, the records each connector sent
(with the values agreed at the last sync), conflicts queued for review, mapping errors, and
per-batch figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class Connector(WorkspaceOwned, Base):
    """An external system that sends and receives records: a CRM, a shop."""

    __tablename__ = "sync_connectors"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(64))  # also the contacts' external-id system
    kind: Mapped[str] = mapped_column(String(32), default="custom")  # custom | hubspot
    mapping: Mapped[dict[str, Any]]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncedRecord(WorkspaceOwned, Base):
    """The last version of one of the connector's records: its time, the values both sides
    agreed on then (the base of the three-way judgement), and the contact it belongs to."""

    __tablename__ = "sync_records"
    __table_args__ = (
        UniqueConstraint("connector_id", "object_type", "external_id"),
        Index("ix_sync_records_contact", "contact_id"),
    )

    connector_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("sync_connectors.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(64))  # contact | order | a custom type
    external_id: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    remote_updated_at: Mapped[datetime]
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncConflict(WorkspaceOwned, Base):
    """A field both sides changed: the winner was applied, the loser waits for a person
    (C4); reverting applies the loser instead."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_open", "workspace_id", "state", "id"),)

    # None: the record came through the API's upsert with its time, not from a connector.
    connector_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("sync_connectors.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE")
    )
    field: Mapped[str] = mapped_column(String(200))
    ours: Mapped[dict[str, Any]]  # {"value": …}: JSON object so both databases agree
    theirs: Mapped[dict[str, Any]]
    winner: Mapped[str] = mapped_column(String(8))
    ours_at: Mapped[datetime]
    theirs_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | accepted | reverted
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class MappingFailure(WorkspaceOwned, Base):
    """A record or field that could not be taken, and why (C5's mapping error log)."""

    __tablename__ = "sync_errors"
    __table_args__ = (Index("ix_sync_errors_connector", "connector_id", "id"),)

    connector_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("sync_connectors.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int]  # the record's place in its batch, from 1
    field: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime]


class SyncBatch(WorkspaceOwned, Base):
    """What one incoming batch did: the figures behind the error rate and sync health."""

    __tablename__ = "sync_batches"
    __table_args__ = (Index("ix_sync_batches_connector", "connector_id", "created_at"),)

    connector_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("sync_connectors.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(64))
    received: Mapped[int]
    created: Mapped[int]
    updated: Mapped[int]
    unchanged: Mapped[int]
    stale: Mapped[int]
    rejected: Mapped[int]
    with_errors: Mapped[int]
    conflicts: Mapped[int]
    duration_ms: Mapped[int]
    created_at: Mapped[datetime]
