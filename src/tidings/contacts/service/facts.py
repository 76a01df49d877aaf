"""What automation reads about many contacts at once: profiles for personalising, tags, lists
and timeline events for conditions. Plain values in a few queries per batch, by contact id
(the ids come from rows the caller already holds, e.g. a claimed batch of enrollments).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.orm import Session

from tidings.conditions.domain import Event, fold
from tidings.contacts import repository
from tidings.contacts.orm import Contact, ContactEvent, ContactList, ContactTag, ListMembership, Tag
from tidings.db.base import among
from tidings.kernel.localization import natural_ago
from tidings.workspaces.orm import Workspace


@dataclass(frozen=True)
class Profile:
    id: int
    workspace_id: int
    phone: str | None
    email: str | None
    name: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    timezone: str | None
    country: str | None
    lifecycle_stage: str
    score: int
    custom_fields: dict[str, Any]
    lead_source: str | None = None
    activity_score: int = 0
    sentiment: float | None = None
    churn_risk: bool = False

    def variables(
        self,
        *,
        now: datetime | None = None,
        last_purchase_at: datetime | None = None,
        default_locale: str | None = None,
    ) -> dict[str, Any]:
        """``contact.*`` of user templates (``{{ contact.first_name }}``), as quick replies;
        with ``now`` and a purchase, ``last_purchase`` (its date) and ``last_purchase_ago``
        (in words of the contact's language: "3 วันที่ผ่านมา") (A6)."""
        first = self.first_name or (self.name.split()[0] if self.name else "")
        found: dict[str, Any] = {}
        if now is not None and last_purchase_at is not None:
            found["last_purchase"] = last_purchase_at.date().isoformat()
            locale = self.locale or default_locale
            found["last_purchase_ago"] = natural_ago(last_purchase_at, now, locale)
        return found | {
            "name": self.name or "",
            "first_name": first,
            "last_name": self.last_name or "",
            "phone": self.phone or "",
            "email": self.email or "",
            "country": self.country or "",
            "fields": dict(self.custom_fields),
        }

    def condition_fields(self) -> dict[str, Any]:
        """Standard and custom fields as conditions compare them."""
        return {
            **self.custom_fields,
            "name": self.name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "phone": self.phone,
            "country": self.country,
            "locale": self.locale,
            "timezone": self.timezone,
            "lifecycle_stage": self.lifecycle_stage,
            "score": self.score,
            "lead_source": self.lead_source,
            "activity_score": self.activity_score,
            "sentiment": self.sentiment,
            "churn_risk": self.churn_risk,
        }


def profiles(session: Session, contact_ids: Collection[int]) -> dict[int, Profile]:
    wanted = sorted(set(contact_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Contact.id,
            Contact.workspace_id,
            Contact.phone,
            Contact.email,
            Contact.name,
            Contact.first_name,
            Contact.last_name,
            Contact.locale,
            Contact.timezone,
            Contact.country,
            Contact.lifecycle_stage,
            Contact.score,
            Contact.custom_fields,
            Contact.lead_source,
            Contact.activity_score,
            Contact.sentiment,
            Contact.churn_risk,
        ).where(among(session, Contact.id, wanted))
    )
    # Positional: the columns are selected in the order of Profile's fields (a keyword per
    # field cost more than reading the row, on batches of thousands).
    found: dict[int, Profile] = {}
    for row in rows:
        values = list(row)
        values[12] = values[12] or {}  # custom_fields
        found[values[0]] = Profile(*values)
    return found


PURCHASE_EVENT = "order.placed"


def last_purchases(session: Session, contact_ids: Collection[int]) -> dict[int, datetime]:
    """Each contact's latest purchase (``order.placed``, by event time), by contact id."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(ContactEvent.contact_id, func.max(ContactEvent.occurred_at))
        .where(
            among(session, ContactEvent.contact_id, wanted),
            ContactEvent.event_type == PURCHASE_EVENT,
        )
        .group_by(ContactEvent.contact_id)
    )
    return {contact_id: at for contact_id, at in rows if at is not None}


def tag_names(session: Session, contact_ids: Collection[int]) -> dict[int, set[str]]:
    """Each contact's tags as conditions know them (``tag_identity``: the stored key)."""
    found: dict[int, set[str]] = {}
    rows = session.execute(
        select(ContactTag.contact_id, Tag.key)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(among(session, ContactTag.contact_id, sorted(set(contact_ids))))
    )
    for contact_id, key in rows:
        found.setdefault(contact_id, set()).add(key)
    return found


def list_names(session: Session, contact_ids: Collection[int]) -> dict[int, set[str]]:
    """The names of each contact's lists, folded as conditions compare them."""
    found: dict[int, set[str]] = {}
    rows = session.execute(
        select(ListMembership.contact_id, ContactList.name)
        .join(ContactList, ContactList.id == ListMembership.list_id)
        .where(among(session, ListMembership.contact_id, sorted(set(contact_ids))))
    )
    for contact_id, name in rows:
        found.setdefault(contact_id, set()).add(fold(name))
    return found


def events_of(
    session: Session,
    contact_ids: Collection[int],
    *,
    types: Collection[str],
    since: datetime | None = None,
) -> dict[int, list[Event]]:
    """Timeline events of these types, by event time (S8), per contact."""
    if not types or not contact_ids:
        return {}
    query = select(
        ContactEvent.contact_id,
        ContactEvent.event_type,
        ContactEvent.occurred_at,
        ContactEvent.properties,
    ).where(
        among(session, ContactEvent.contact_id, sorted(set(contact_ids))),
        ContactEvent.event_type.in_(sorted(types)),
    )
    if since is not None:
        query = query.where(ContactEvent.occurred_at >= since)
    found: dict[int, list[Event]] = {}
    for contact_id, kind, at, properties in session.execute(
        query.order_by(ContactEvent.occurred_at)
    ):
        found.setdefault(contact_id, []).append(Event(kind, at, properties or {}))
    return found


SETTLE_ON_POSTGRES = timedelta(seconds=2)  # ids may commit out of order with many writers


def settled_events_after(
    session: Session, *, position: int, now: datetime, limit: int
) -> Sequence[Any]:
    """``events_after`` for a reader of the timeline feed: on PostgreSQL, with many writers,
    ids may commit out of order, so only events a moment old are read."""
    postgres = session.get_bind().dialect.name == "postgresql"
    lag = SETTLE_ON_POSTGRES if postgres else timedelta()
    return events_after(session, position=position, received_by=now - lag, limit=limit)


def events_after(
    session: Session, *, position: int, received_by: datetime, limit: int
) -> Sequence[Any]:
    """Timeline events with ids above ``position``, in id order, up to the first one received
    after ``received_by``: the feed that triggers, goals and exits read. Stopping there (not
    skipping it) keeps the position safe to move past everything returned."""
    rows = session.execute(
        select(
            ContactEvent.id,
            ContactEvent.workspace_id,
            ContactEvent.contact_id,
            ContactEvent.event_type,
            ContactEvent.occurred_at,
            ContactEvent.properties,
            ContactEvent.received_at,
            ContactEvent.depth,
            ContactEvent.source,
        )
        .where(ContactEvent.id > position)
        .order_by(ContactEvent.id)
        .limit(limit)
    ).all()
    for index, row in enumerate(rows):
        if row.received_at > received_by:
            return rows[:index]
    return rows


def events_before(
    session: Session, contact_id: int, *, types: Collection[str], before_id: int, limit: int
) -> Sequence[Any]:
    """The contact's latest events of these types written before event ``before_id``, newest
    first: ``(id, event_type, occurred_at, properties)``."""
    return session.execute(
        select(
            ContactEvent.id,
            ContactEvent.event_type,
            ContactEvent.occurred_at,
            ContactEvent.properties,
        )
        .where(
            ContactEvent.contact_id == contact_id,
            ContactEvent.event_type.in_(sorted(types)),
            ContactEvent.id < before_id,
        )
        .order_by(ContactEvent.id.desc())
        .limit(limit)
    ).all()


STANDARD_FIELDS = (
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "locale",
    "timezone",
    "country",
    "lifecycle_stage",
    "score",
    "lead_source",
)


def field_change(field: str, value: Any) -> dict[str, Any]:
    """``update_contact`` data that sets one field, standard or custom, by its name."""
    if field in STANDARD_FIELDS:
        return {field: value}
    return {"custom_fields": {field: value}}


def tag_labels(session: Session, contact_ids: Collection[int]) -> dict[int, list[str]]:
    """Each contact's tags by their display names, sorted (for people and integrations)."""
    return dict(repository.tag_names_of(session, contact_ids))


def latest_events(
    session: Session, workspace: Workspace, *, types: Collection[str], limit: int
) -> Sequence[Any]:
    """The workspace's newest timeline events of these types (a type "order.*" stands for its
    family), newest first, with the columns ``events_after`` gives."""
    exact = [t for t in types if not t.endswith(".*")]
    families = [t[:-1] for t in types if t.endswith(".*")]
    wanted: list[ColumnElement[bool]] = [ContactEvent.event_type.in_(exact)] if exact else []
    wanted += [ContactEvent.event_type.startswith(prefix, autoescape=True) for prefix in families]
    if "*" in types:
        wanted = [true()]
    return session.execute(
        select(
            ContactEvent.id,
            ContactEvent.workspace_id,
            ContactEvent.contact_id,
            ContactEvent.event_type,
            ContactEvent.occurred_at,
            ContactEvent.properties,
            ContactEvent.received_at,
            ContactEvent.depth,
        )
        .where(ContactEvent.workspace_id == workspace.id, or_(*wanted))
        .order_by(ContactEvent.id.desc())
        .limit(limit)
    ).all()


def latest_event_id(session: Session) -> int:
    return int(session.scalar(select(func.max(ContactEvent.id))) or 0)
