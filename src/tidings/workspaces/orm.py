"""Tables of workspaces, users and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, IdType, WorkspaceOwned


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    default_region: Mapped[str] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(35))
    policy_overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The operator's choice (CLI), never the workspace's own: its webhooks may reach private
    # and loopback addresses (an n8n on the same host); refused otherwise (no SSRF).
    allow_private_webhooks: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class User(WorkspaceOwned, Base):
    """A person who works in a workspace: owner, admin or agent."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebSession(WorkspaceOwned, Base):
    """A user's signed-in browser. The cookie holds a random token; only its digest is kept,
    with the token the browser must echo on every change (CSRF)."""

    __tablename__ = "web_sessions"

    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ApiKey(WorkspaceOwned, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by_user_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Team(WorkspaceOwned, Base):
    """A group of agents a conversation can be assigned to (I3)."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class TeamMember(WorkspaceOwned, Base):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    team_id: Mapped[int] = mapped_column(IdType, ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"))


class SignInThrottle(Base):
    """Failed sign-ins of one account (``account:<workspace slug>:<e-mail>``) or one address
    (``address:<ip>``): after a few, each further try waits longer (see
    ``domain.sign_in_wait``)."""

    __tablename__ = "sign_in_throttles"

    subject: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class SignInRecord(Base):
    """One sign-in attempt, kept for the workspace's admins to review: who, from where, and
    whether it succeeded, failed or was refused while throttled. ``workspace_id`` is empty
    when the workspace named does not exist (then only operators see it)."""

    __tablename__ = "sign_in_records"
    __table_args__ = (
        Index("ix_sign_in_records_workspace_time", "workspace_id", "at"),
        Index("ix_sign_in_records_at", "at"),  # pruning past the retention period
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # signed_in, failed, throttled
    at: Mapped[datetime]
