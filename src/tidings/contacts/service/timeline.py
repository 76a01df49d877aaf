"""Appending to a contact's timeline: system events and events reported from outside.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.orm import (
    Contact,
    ContactEvent,
)
from tidings.db.base import bulk_insert, table_of
from tidings.kernel.errors import invalid
from tidings.workspaces.orm import Workspace

EVENT_TYPE_MAX = 64

# How many rule firings led to the events being written now: the rules engine sets it while it
# carries out a rule's actions, so that tag.added and the like carry it and the loop guard can
# stop rules that would trigger each other forever. Plain code (an agent, an import) is 0.
_CAUSATION_DEPTH: ContextVar[int] = ContextVar("causation_depth", default=0)


@contextmanager
def caused_at_depth(depth: int) -> Iterator[None]:
    """Events written inside the block are marked as ``depth`` firings deep."""
    token = _CAUSATION_DEPTH.set(depth)
    try:
        yield
    finally:
        _CAUSATION_DEPTH.reset(token)


def causation_depth() -> int:
    """How many rule firings deep the events written now are (see :func:`caused_at_depth`)."""
    return _CAUSATION_DEPTH.get()


def log_event(
    session: Session,
    workspace: Workspace,
    contact_id: int,
    event_type: str,
    occurred_at: datetime,
    properties: dict[str, Any],
    source: str,
) -> None:
    """Append a system event to a contact's timeline (same transaction as its cause)."""
    session.add(
        ContactEvent(
            workspace_id=workspace.id,
            contact_id=contact_id,
            event_type=event_type,
            occurred_at=occurred_at,
            received_at=occurred_at,
            source=source,
            properties=properties,
            depth=_CAUSATION_DEPTH.get(),
        )
    )


def record_event(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    event_type: str,
    occurred_at: datetime | None,
    properties: dict[str, Any],
    source: str,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[ContactEvent, bool]:
    """Append an event reported from outside (order placed, product viewed …).

    ``occurred_at`` is when it happened (defaults to now) and may lie in the past: conditions
    count by event time (S8). A repeated ``idempotency_key`` returns the stored event instead
    of a second one. Returns the event and whether it was new.

    Raises:
        TidingsError: 422 for a malformed type or an event time in the future.
    """
    kind = event_type.strip()
    if not kind or len(kind) > EVENT_TYPE_MAX or any(ch.isspace() for ch in kind):
        raise invalid(
            "invalid_event_type", f"use 1-{EVENT_TYPE_MAX} characters without spaces", field="type"
        )
    if occurred_at is not None and occurred_at > now:
        raise invalid("future_event", "an event cannot happen after now", field="occurred_at")
    if idempotency_key:
        stored = repository.find_event_by_key(session, workspace, idempotency_key)
        if stored is not None:
            return stored, False
    event = ContactEvent(
        workspace_id=workspace.id,
        contact_id=contact.id,
        event_type=kind,
        occurred_at=occurred_at or now,
        received_at=now,
        source=source,
        properties=properties,
        idempotency_key=idempotency_key or None,
        depth=_CAUSATION_DEPTH.get(),
    )
    session.add(event)
    session.flush()
    return event, True


@dataclass(frozen=True)
class NewEvent:
    """An event reported from outside, for :func:`record_events`."""

    contact_id: int
    event_type: str
    occurred_at: datetime
    properties: dict[str, Any]
    idempotency_key: str


def record_events(
    session: Session,
    *,
    workspace: Workspace,
    events: Sequence[NewEvent],
    source: str,
    now: datetime,
) -> None:
    """:func:`record_event` for many events at once, in one insert: a key already recorded
    keeps its first event. The caller has checked the types and times (its own, not a
    user's)."""
    depth = _CAUSATION_DEPTH.get()
    bulk_insert(
        session,
        table_of(ContactEvent),
        [
            {
                "workspace_id": workspace.id,
                "contact_id": event.contact_id,
                "event_type": event.event_type,
                "occurred_at": event.occurred_at,
                "received_at": now,
                "source": source,
                "properties": event.properties,
                "idempotency_key": event.idempotency_key,
                "depth": depth,
            }
            for event in events
        ],
        skip_conflicts=True,
    )


ORDER_EVENT = "order.placed"


def customers_acquired(
    session: Session, workspace: Workspace, *, since: datetime, until: datetime
) -> int:
    """Contacts whose first order (``order.placed``) falls in [since, until): the acquisitions
    that cost per acquisition divides by (P9, R4)."""
    return repository.first_events_between(session, workspace, ORDER_EVENT, since, until)
