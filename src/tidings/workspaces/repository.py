"""Queries on workspaces, users and API keys; every owned read takes the workspace."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.workspaces.orm import ApiKey, User, Workspace


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


def list_api_keys(session: Session, workspace: Workspace) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.workspace_id == workspace.id).order_by(ApiKey.id)
    ).all()
