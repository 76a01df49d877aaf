"""Queueing many messages at once: the set-based twin of ``queue_message`` for mass sends
(broadcasts now, sequence steps later).

The caller has already decided each message with ``decide_send`` (pure, in a loop); this
writes the outcome with one statement per table for the whole chunk: conversations that do
not exist yet, the messages (``ON CONFLICT DO NOTHING`` on their idempotency key, so a chunk
planned again after a crash adds nothing), and one trace per new message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tidings.db.base import among, bulk_insert, table_of, values_of
from tidings.messaging.domain import ConversationStatus, MessageStatus, Origin, Purpose
from tidings.messaging.orm import Conversation, Message, SendTrace
from tidings.messaging.policy import Decision, Defer, Send


@dataclass(frozen=True)
class Planned:
    """One decided message of a mass send."""

    contact_id: int
    recipient: str
    content: dict[str, Any]
    summary: str | None
    content_digest: str
    idempotency_key: str
    decision: Decision
    send_at: datetime  # when a message the policy lets through should go (its schedule)


def queue_planned(
    session: Session,
    *,
    workspace_id: int,
    number_id: int | None,
    origin: Origin,
    purpose: Purpose,
    broadcast_id: int | None,
    planned: Sequence[Planned],
    now: datetime,
    sender_id: int | None = None,
) -> int:
    """Write a chunk of decided messages; returns how many were new (not already queued).

    WhatsApp messages go to ``number_id`` (with their conversations); e-mails (``number_id``
    None) come from the identity ``sender_id``.
    """
    if not planned:
        return 0
    keys = [p.idempotency_key for p in planned]
    known = set(
        session.scalars(
            select(Message.idempotency_key).where(
                Message.workspace_id == workspace_id,
                among(session, Message.idempotency_key, keys),
            )
        )
    )
    fresh = [p for p in planned if p.idempotency_key not in known]
    if not fresh:
        return 0
    conversations = (
        _conversations(session, workspace_id, number_id, fresh, now) if number_id else {}
    )
    channel = "whatsapp" if number_id else "email"
    rows = []
    for item in fresh:
        status, at, reason = state_of(item)
        rows.append(
            {
                "workspace_id": workspace_id,
                "channel": channel,
                "conversation_id": conversations.get(item.contact_id),
                "contact_id": item.contact_id,
                "number_id": number_id,
                "sender_id": sender_id,
                "direction": "out",
                "kind": item.content["type"],
                "text": item.summary,
                "content": item.content,
                "status": status,
                "status_reason": reason,
                "origin": origin.value,
                "purpose": purpose.value,
                "idempotency_key": item.idempotency_key,
                "recipient": item.recipient,
                "resend_if_uncertain": purpose != Purpose.MARKETING,
                "content_digest": item.content_digest,
                "broadcast_id": broadcast_id,
                "next_attempt_at": at,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    bulk_insert(session, table_of(Message), rows, skip_conflicts=True)
    # One trace per new message, written by the database from the rows just inserted: the
    # outcome is the status (queued, deferred, skipped), the reason the rule's (P7).
    keys = [row["idempotency_key"] for row in rows]
    traces = table_of(SendTrace)
    session.execute(
        insert(traces).from_select(
            ["workspace_id", "message_id", "contact_id", "outcome", "reason", "at"],
            select(
                Message.workspace_id,
                Message.id,
                Message.contact_id,
                Message.status,
                func.coalesce(Message.status_reason, literal(f"queued by {origin}")),
                literal(now, type_=traces.c.at.type),
            ).where(
                Message.workspace_id == workspace_id,
                among(session, Message.idempotency_key, keys),
            ),
        )
    )
    return len(rows)


def state_of(item: Planned) -> tuple[str, datetime | None, str | None]:
    """The outbox state a planned message is written with: status, when, and why."""
    decision = item.decision
    if isinstance(decision, Send):
        return MessageStatus.QUEUED.value, item.send_at, None
    if isinstance(decision, Defer):
        return (
            MessageStatus.DEFERRED.value,
            max(decision.until, item.send_at),
            decision.reason[:300],
        )
    return MessageStatus.SKIPPED.value, None, decision.reason[:300]


def _conversations(
    session: Session, workspace_id: int, number_id: int, planned: Sequence[Planned], now: datetime
) -> dict[int, int]:
    contact_ids = sorted({p.contact_id for p in planned})
    existing = dict(
        session.execute(
            select(Conversation.contact_id, Conversation.id).where(
                Conversation.number_id == number_id,
                among(session, Conversation.contact_id, contact_ids),
            )
        ).all()
    )
    missing = [c for c in contact_ids if c not in existing]
    if not missing:
        return existing
    # Nobody has written yet: kept out of the open inbox until the customer answers (an
    # answer reopens it), so a mass send does not bury the agents' queue. Written by the
    # database from the id list, ON CONFLICT for a customer writing at this very moment.
    ids = values_of(session, missing, Conversation.__table__.c.contact_id.type).subquery()
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        dialect_insert(table_of(Conversation))
        .from_select(
            [
                "workspace_id",
                "number_id",
                "contact_id",
                "status",
                "unread_count",
                "created_at",
                "updated_at",
            ],
            select(
                literal(workspace_id),
                literal(number_id),
                ids.c.value,
                literal(ConversationStatus.RESOLVED.value),
                literal(0),
                literal(now, type_=Conversation.__table__.c.created_at.type),
                literal(now, type_=Conversation.__table__.c.updated_at.type),
            ).where(literal(True)),  # SQLite needs a WHERE before ON CONFLICT
        )
        .on_conflict_do_nothing()
    )
    created = session.execute(
        select(Conversation.contact_id, Conversation.id).where(
            Conversation.number_id == number_id, among(session, Conversation.contact_id, missing)
        )
    )
    return {**existing, **dict(created.all())}


PENDING = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value, MessageStatus.SENDING.value)


def outcomes_of_broadcast(session: Session, broadcast_id: int) -> dict[str, int]:
    """How many of a broadcast's messages are in each status."""
    rows = session.execute(
        select(Message.status, func.count())
        .where(Message.broadcast_id == broadcast_id)
        .group_by(Message.status)
    )
    return {status: int(count) for status, count in rows}


def reasons_of_broadcast(session: Session, broadcast_id: int) -> dict[str, dict[str, int]]:
    """Why its messages were skipped, deferred or failed: status → reason → count."""
    rows = session.execute(
        select(Message.status, Message.status_reason, func.count())
        .where(
            Message.broadcast_id == broadcast_id,
            Message.status.in_(("skipped", "deferred", "failed", "uncertain")),
        )
        .group_by(Message.status, Message.status_reason)
    )
    found: dict[str, dict[str, int]] = {}
    for status, reason, count in rows:
        found.setdefault(status, {})[reason or "(no reason)"] = int(count)
    return found


def pending_of_broadcast(session: Session, broadcast_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Message.broadcast_id == broadcast_id, Message.status.in_(PENDING)
            )
        )
        or 0
    )


def skip_pending_of_broadcast(
    session: Session, *, workspace_id: int, broadcast_id: int, reason: str, now: datetime
) -> int:
    """Cancel what has not gone yet (queued or deferred), with a trace each; returns how many."""
    waiting = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)
    # RETURNING: exactly the rows this statement took, even with a dispatcher claiming beside it.
    rows = session.execute(
        update(Message)
        .where(Message.broadcast_id == broadcast_id, Message.status.in_(waiting))
        .values(status="skipped", status_reason=reason, next_attempt_at=None, updated_at=now)
        .returning(Message.id, Message.contact_id)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return 0
    session.execute(
        insert(table_of(SendTrace)),
        [
            {
                "workspace_id": workspace_id,
                "message_id": message_id,
                "contact_id": contact_id,
                "outcome": "skipped",
                "reason": reason,
                "provider_code": None,
                "at": now,
            }
            for message_id, contact_id in rows
        ],
    )
    return len(rows)


def cost_of_broadcast(session: Session, broadcast_id: int) -> float:
    return float(
        session.scalar(
            select(func.coalesce(func.sum(Message.cost), 0.0)).where(
                Message.broadcast_id == broadcast_id
            )
        )
        or 0.0
    )


def message_ids_by_key(
    session: Session, *, workspace_id: int, keys: Sequence[str]
) -> dict[str, int]:
    """The ids of a workspace's messages by idempotency key."""
    if not keys:
        return {}
    rows = session.execute(
        select(Message.idempotency_key, Message.id).where(
            Message.workspace_id == workspace_id,
            among(session, Message.idempotency_key, list(keys)),
        )
    )
    return {key: message_id for key, message_id in rows if key is not None}
