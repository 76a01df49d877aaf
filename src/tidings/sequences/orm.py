"""Tables of sequences (S1, S2, S5).

A sequence keeps every version it ever had (definitions are immutable once saved); each
enrollment points at the version it runs. Enrollments are the engine's durable work rows:
the worker claims those whose ``due_at`` has come. Every step an enrollment runs is one row of
``sequence_step_runs``, unique on ``(enrollment, visit)``: the idempotency key of the step and
the source of step statistics.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class SequenceRecord(WorkspaceOwned, Base):
    __tablename__ = "sequences"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # draft, active, paused, archived
    current_version: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SequenceVersion(WorkspaceOwned, Base):
    __tablename__ = "sequence_versions"
    __table_args__ = (UniqueConstraint("sequence_id", "version"),)

    sequence_id: Mapped[int] = mapped_column(IdType, ForeignKey("sequences.id", ondelete="CASCADE"))
    version: Mapped[int]
    definition: Mapped[dict[str, Any]]
    # Split winners chosen after their test period: step id → branch index.
    winners: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Enrollment(WorkspaceOwned, Base):
    __tablename__ = "sequence_enrollments"
    __table_args__ = (
        # The worker's queue: only running enrollments are in it.
        Index(
            "ix_sequence_enrollments_due",
            "due_at",
            sqlite_where=sql_text("status = 'active'"),
            postgresql_where=sql_text("status = 'active'"),
        ),
        # S2: never enrolled twice at once in the same sequence.
        Index(
            "uq_sequence_enrollments_running",
            "sequence_id",
            "contact_id",
            unique=True,
            sqlite_where=sql_text("status = 'active'"),
            postgresql_where=sql_text("status = 'active'"),
        ),
        Index("ix_sequence_enrollments_contact", "contact_id", "status"),
        Index("ix_sequence_enrollments_sequence", "sequence_id", "status"),
    )

    sequence_id: Mapped[int] = mapped_column(IdType, ForeignKey("sequences.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("sequence_versions.id", ondelete="CASCADE")
    )
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))  # active, completed, converted, exited, removed
    step_id: Mapped[str] = mapped_column(String(64))
    arrived_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    visit: Mapped[int] = mapped_column(default=0)
    reached_goals: Mapped[str] = mapped_column(String(1000), default="")  # comma-separated ids
    source: Mapped[str] = mapped_column(String(64))  # api, manual, trigger:tag.added, sequence:…
    enrolled_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(300))
    converted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class StepRunRecord(WorkspaceOwned, Base):
    __tablename__ = "sequence_step_runs"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "visit"),
        Index("ix_sequence_step_runs_step", "sequence_id", "step_id", "outcome"),
        Index("ix_sequence_step_runs_message", "message_id"),
    )

    enrollment_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("sequence_enrollments.id", ondelete="CASCADE")
    )
    sequence_id: Mapped[int] = mapped_column(IdType)
    version_id: Mapped[int] = mapped_column(IdType)
    contact_id: Mapped[int] = mapped_column(IdType)
    step_id: Mapped[str] = mapped_column(String(64))
    visit: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(300), default="")
    message_id: Mapped[int | None] = mapped_column(IdType)
    at: Mapped[datetime]


class EventFeedPosition(Base):
    """How far the sequence engine has read the contacts' timeline (triggers, goals, exits)."""

    __tablename__ = "sequence_event_feed"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
