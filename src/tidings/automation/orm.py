"""Tables of automation: segments and their members, keyword groups, rules and their runs,
and how far the rules engine has read the timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class Segment(WorkspaceOwned, Base):
    """A saved condition whose members are kept (A3); ``key`` is the folded name."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    condition: Mapped[dict[str, Any]]
    member_count: Mapped[int] = mapped_column(default=0)
    refreshed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SegmentMember(Base):
    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_contact", "contact_id"),)

    segment_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    entered_at: Mapped[datetime]


class KeywordGroup(WorkspaceOwned, Base):
    """Words that mean one thing in any language ("ส่วนลด", "折扣", "discount") (A2)."""

    __tablename__ = "keyword_groups"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(64))
    terms: Mapped[dict[str, Any]]  # {"terms": [...]}: JSON object so both databases agree
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Rule(WorkspaceOwned, Base):
    """Trigger → condition → actions (A1)."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    definition: Mapped[dict[str, Any]]  # trigger, condition, actions, guard
    next_run_at: Mapped[datetime | None]  # scheduled rules only
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RuleRun(WorkspaceOwned, Base):
    """One evaluation of a rule for one contact: fired, not matched (and why), skipped by the
    loop guard, or failed — the trace that answers "why did this happen (or not)?"."""

    __tablename__ = "rule_runs"
    __table_args__ = (
        Index("ix_rule_runs_rule_contact_time", "rule_id", "contact_id", "created_at"),
        Index("ix_rule_runs_contact_time", "contact_id", "created_at"),
    )

    rule_id: Mapped[int] = mapped_column(IdType, ForeignKey("rules.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(IdType, ForeignKey("contacts.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500), default="")
    actions_done: Mapped[dict[str, Any]]  # {"done": [...], "failed": [...]}
    depth: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]


class RuleFeedPosition(Base):
    """How far the rules engine has read the contacts' timeline."""

    __tablename__ = "rule_event_feed"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class Store(WorkspaceOwned, Base):
    """A shop customers can visit: where it is and when it is open (A5: nearest store)."""

    __tablename__ = "stores"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    latitude: Mapped[float]
    longitude: Mapped[float]
    hours: Mapped[dict[str, Any]]  # {"mon": "10:00-21:00", …}; a missing day is closed
    phone: Mapped[str | None] = mapped_column(String(32))
    map_url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Product(WorkspaceOwned, Base):
    """A catalogue product and the names customers and other systems give it: detected in
    messages (``order.intent`` with the SKU, X1) and the target of name normalisation (C5)."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("workspace_id", "sku"),)

    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[dict[str, Any]]  # {"aliases": [...]}: JSON object so both databases agree
    price: Mapped[str | None] = mapped_column(String(32))  # decimal text: no float rounding
    currency: Mapped[str | None] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
