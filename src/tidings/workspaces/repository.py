"""Queries on workspaces, users and API keys; every owned read takes the workspace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tidings.workspaces.orm import ApiKey, Team, TeamMember, User, WebSession, Workspace


def get_workspace(session: Session, workspace_id: int) -> Workspace | None:
    return session.get(Workspace, workspace_id)


def get_workspace_by_slug(session: Session, slug: str) -> Workspace | None:
    return session.scalar(select(Workspace).where(Workspace.slug == slug))


def list_workspaces(session: Session) -> Sequence[Workspace]:
    return session.scalars(select(Workspace).order_by(Workspace.id)).all()


def get_user(session: Session, workspace: Workspace, user_id: int) -> User | None:
    return session.scalar(select(User).where(User.workspace_id == workspace.id, User.id == user_id))


def get_user_by_email(session: Session, workspace: Workspace, email: str) -> User | None:
    return session.scalar(
        select(User).where(User.workspace_id == workspace.id, User.email == email)
    )


def list_users(session: Session, workspace: Workspace) -> Sequence[User]:
    return session.scalars(
        select(User).where(User.workspace_id == workspace.id).order_by(User.id)
    ).all()


def get_api_key(session: Session, workspace: Workspace, key_id: int) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where(ApiKey.workspace_id == workspace.id, ApiKey.id == key_id)
    )


def find_api_key_by_digest(session: Session, digest: str) -> ApiKey | None:
    """The one unscoped lookup: it is how a request learns its workspace."""
    return session.scalar(select(ApiKey).where(ApiKey.digest == digest))


def find_web_session_by_digest(session: Session, digest: str) -> WebSession | None:
    return session.scalar(select(WebSession).where(WebSession.digest == digest))


def list_api_keys(session: Session, workspace: Workspace) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.workspace_id == workspace.id).order_by(ApiKey.id)
    ).all()


def get_team(session: Session, workspace: Workspace, team_id: int) -> Team | None:
    return session.scalar(select(Team).where(Team.workspace_id == workspace.id, Team.id == team_id))


def team_by_name(session: Session, workspace: Workspace, name: str) -> Team | None:
    return session.scalar(select(Team).where(Team.workspace_id == workspace.id, Team.name == name))


def list_teams(session: Session, workspace: Workspace) -> Sequence[Team]:
    return session.scalars(
        select(Team).where(Team.workspace_id == workspace.id).order_by(Team.name)
    ).all()


def team_member_ids(session: Session, team_ids: Sequence[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {team_id: [] for team_id in team_ids}
    rows = session.execute(
        select(TeamMember.team_id, TeamMember.user_id)
        .where(TeamMember.team_id.in_(list(team_ids)))
        .order_by(TeamMember.user_id)
    )
    for team_id, user_id in rows:
        found[team_id].append(user_id)
    return found


def find_membership(session: Session, team: Team, user_id: int) -> TeamMember | None:
    return session.scalar(
        select(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == user_id)
    )


def end_user_sessions(session: Session, user: User, *, now: datetime) -> int:
    """End every open web session of ``user``; returns how many were open."""
    ended = session.scalars(
        update(WebSession)
        .where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
        .values(ended_at=now)
        .returning(WebSession.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    return len(ended)


def revoke_user_keys(session: Session, user: User, *, now: datetime) -> int:
    """Revoke every API key ``user`` created; returns how many were live."""
    revoked = session.scalars(
        update(ApiKey)
        .where(ApiKey.created_by_user_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(ApiKey.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    return len(revoked)
