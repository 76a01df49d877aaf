"""Queries on WhatsApp numbers; every read takes the workspace, but for the webhook lookup."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tidings.channels.orm import WhatsAppInboundEvent, WhatsAppNumber
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


def quarantined_updates(
    session: Session, workspace: Workspace, *, after_id: int | None, limit: int
) -> Sequence[WhatsAppInboundEvent]:
    query = select(WhatsAppInboundEvent).where(
        WhatsAppInboundEvent.workspace_id == workspace.id,
        WhatsAppInboundEvent.quarantined_at.is_not(None),
    )
    if after_id is not None:
        query = query.where(WhatsAppInboundEvent.id > after_id)
    return session.scalars(query.order_by(WhatsAppInboundEvent.id).limit(limit)).all()


def count_quarantined(session: Session, workspace_id: int | None = None) -> int:
    """Quarantined updates of one workspace, or of the whole installation."""
    query = select(func.count()).where(WhatsAppInboundEvent.quarantined_at.is_not(None))
    if workspace_id is not None:
        query = query.where(WhatsAppInboundEvent.workspace_id == workspace_id)
    return int(session.scalar(query) or 0)


def release_quarantined(session: Session, workspace: Workspace, ids: Sequence[int] | None) -> int:
    """Put quarantined updates back in the intake (all of them when ``ids`` is None)."""
    statement = (
        update(WhatsAppInboundEvent)
        .where(
            WhatsAppInboundEvent.workspace_id == workspace.id,
            WhatsAppInboundEvent.quarantined_at.is_not(None),
        )
        .values(quarantined_at=None, processed_at=None, retry_at=None, attempts=0)
        .execution_options(synchronize_session=False)
    )
    if ids is not None:
        statement = statement.where(WhatsAppInboundEvent.id.in_(list(ids)))
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)
