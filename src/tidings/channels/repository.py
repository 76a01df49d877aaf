"""Queries on WhatsApp numbers; every read takes the workspace, but for the webhook lookup."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.channels.orm import WhatsAppNumber
from tidings.workspaces.orm import Workspace


def get_number(session: Session, workspace: Workspace, number_id: int) -> WhatsAppNumber | None:
    return session.scalar(
        select(WhatsAppNumber).where(
            WhatsAppNumber.workspace_id == workspace.id, WhatsAppNumber.id == number_id
        )
    )


def list_numbers(session: Session, workspace: Workspace) -> Sequence[WhatsAppNumber]:
    return session.scalars(
        select(WhatsAppNumber)
        .where(WhatsAppNumber.workspace_id == workspace.id)
        .order_by(WhatsAppNumber.id)
    ).all()


def find_by_phone_number_id(session: Session, phone_number_id: str) -> WhatsAppNumber | None:
    """Unscoped on purpose: a Graph phone-number id belongs to one workspace only."""
    return session.scalar(
        select(WhatsAppNumber).where(WhatsAppNumber.phone_number_id == phone_number_id)
    )


def find_by_webhook_key(session: Session, webhook_key: str) -> WhatsAppNumber | None:
    """Unscoped on purpose: it is how an inbound webhook learns its workspace."""
    return session.scalar(select(WhatsAppNumber).where(WhatsAppNumber.webhook_key == webhook_key))


def list_numbers_of_workspace(session: Session, workspace_id: int) -> Sequence[WhatsAppNumber]:
    """The numbers of the workspace a webhook was already authenticated for."""
    return session.scalars(
        select(WhatsAppNumber).where(WhatsAppNumber.workspace_id == workspace_id)
    ).all()


def numbers_by_ids(session: Session, number_ids: Sequence[int]) -> Sequence[WhatsAppNumber]:
    """Unscoped on purpose: the dispatcher sends for every workspace's queued messages."""
    if not number_ids:
        return []
    return session.scalars(
        select(WhatsAppNumber).where(WhatsAppNumber.id.in_(set(number_ids)))
    ).all()
