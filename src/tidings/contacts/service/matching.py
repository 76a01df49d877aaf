"""Contacts that match a condition (segments, rule audiences), and the facts of the few that
a rule or branch judges one by one."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.condition_sql import (
    BOOLEAN_COLUMNS,
    NUMBER_COLUMNS,
    TEXT_COLUMNS,
    NotAudienceConditionError,
    Sources,
    matching,
)
from tidings.contacts.orm import Contact

__all__ = ["NotAudienceConditionError", "Sources"]

# Contact columns a condition may compare (any other field name is a custom field).
CONDITION_FIELDS = frozenset(TEXT_COLUMNS) | frozenset(NUMBER_COLUMNS) | frozenset(BOOLEAN_COLUMNS)


def matching_ids_query(
    session: Session,
    workspace_id: int,
    condition: Any,
    *,
    as_of: datetime,
    sources: Sources,
) -> Select[Any]:
    """``SELECT id FROM contacts`` of the workspace where ``condition`` holds at ``as_of``.

    Raises:
        NotAudienceConditionError: the condition names a sequence's steps.
    """
    dialect = session.get_bind().dialect.name
    clause = matching(
        condition, workspace_id=workspace_id, as_of=as_of, dialect=dialect, sources=sources
    )
    return select(Contact.id).where(Contact.workspace_id == workspace_id, clause)


def count_matching(
    session: Session, workspace_id: int, condition: Any, *, as_of: datetime, sources: Sources
) -> int:
    query = matching_ids_query(session, workspace_id, condition, as_of=as_of, sources=sources)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def consents_of(
    session: Session, contact_ids: Collection[int]
) -> dict[int, dict[tuple[str, str], str]]:
    """Each contact's stored consent statuses by (channel, purpose)."""
    found: dict[int, dict[tuple[str, str], str]] = {}
    for contact_id, channel, purpose, status in repository.consent_states(session, contact_ids):
        found.setdefault(contact_id, {})[(channel, purpose)] = status
    return found


def set_activity(
    session: Session,
    contact_id: int,
    *,
    activity_score: int,
    sentiment: float | None,
    churn_risk: bool,
) -> None:
    """Store what automation derived from the contact's messages (A7); no timeline entry,
    since nobody changed the contact."""
    contact = session.get(Contact, contact_id)
    if contact is not None:
        contact.activity_score, contact.churn_risk = activity_score, churn_risk
        if sentiment is not None:
            contact.sentiment = sentiment
