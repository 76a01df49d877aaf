"""Queries on contacts, tags, lists, fields, consents, external ids and events.

Every function takes the workspace (or ids already scoped by one) so that no query can return
another tenant's rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from tidings.contacts.orm import (
    Consent,
    Contact,
    ContactAlias,
    ContactEvent,
    ContactList,
    ContactTag,
    CustomFieldDefinition,
    ExternalId,
    ListMembership,
    Tag,
)
from tidings.db.base import among, table_of
from tidings.workspaces.orm import Workspace


def get_contact(session: Session, workspace: Workspace, contact_id: int) -> Contact | None:
    # By primary key: a contact this session already holds costs no query (rules act on the
    # same contact many times a batch); the workspace check keeps tenants apart either way.
    contact = session.get(Contact, contact_id)
    return contact if contact is not None and contact.workspace_id == workspace.id else None


def contacts_by_id(
    session: Session, workspace: Workspace, contact_ids: Sequence[int]
) -> list[Contact]:
    if not contact_ids:
        return []
    return list(
        session.scalars(
            select(Contact).where(
                Contact.workspace_id == workspace.id, among(session, Contact.id, contact_ids)
            )
        )
    )


def field_change_events(
    session: Session, workspace: Workspace, contact_id: int
) -> Sequence[ContactEvent]:
    """The contact's creation and field changes, oldest first."""
    return session.scalars(
        select(ContactEvent)
        .where(
            ContactEvent.workspace_id == workspace.id,
            ContactEvent.contact_id == contact_id,
            ContactEvent.event_type.in_(("contact.created", "contact.updated")),
        )
        .order_by(ContactEvent.id)
    ).all()


def find_contact_by_phone(session: Session, workspace: Workspace, phone: str) -> Contact | None:
    """The contact with this phone, as its own or as one a merge brought it (an alias)."""
    return session.scalar(
        select(Contact).where(Contact.workspace_id == workspace.id, Contact.phone == phone)
    ) or find_contact_by_alias(session, workspace, "phone", phone)


def find_contact_by_email(session: Session, workspace: Workspace, email: str) -> Contact | None:
    return session.scalar(
        select(Contact).where(Contact.workspace_id == workspace.id, Contact.email == email)
    ) or find_contact_by_alias(session, workspace, "email", email)


def aliases_of(session: Session, workspace: Workspace, contact_id: int) -> set[tuple[str, str]]:
    return {
        (kind, value)
        for kind, value in session.execute(
            select(ContactAlias.kind, ContactAlias.value).where(
                ContactAlias.workspace_id == workspace.id, ContactAlias.contact_id == contact_id
            )
        )
    }


def find_contact_by_alias(
    session: Session, workspace: Workspace, kind: str, value: str
) -> Contact | None:
    return session.scalar(
        select(Contact)
        .join(ContactAlias, ContactAlias.contact_id == Contact.id)
        .where(
            ContactAlias.workspace_id == workspace.id,
            ContactAlias.kind == kind,
            ContactAlias.value == value,
        )
    )


def find_contact_by_external_id(
    session: Session, workspace: Workspace, system: str, external_id: str
) -> Contact | None:
    return session.scalar(
        select(Contact)
        .join(ExternalId, ExternalId.contact_id == Contact.id)
        .where(
            ExternalId.workspace_id == workspace.id,
            ExternalId.system == system,
            ExternalId.external_id == external_id,
        )
    ) or find_contact_by_alias(session, workspace, f"external:{system}", external_id)


def contact_ids_by_phone(
    session: Session, workspace: Workspace, phones: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(phones))
    if not wanted:
        return {}
    rows = session.execute(
        select(Contact.phone, Contact.id).where(
            Contact.workspace_id == workspace.id, among(session, Contact.phone, wanted)
        )
    )
    return {phone: contact_id for phone, contact_id in rows if phone is not None}


def contact_ids_by_email(
    session: Session, workspace: Workspace, emails: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(emails))
    if not wanted:
        return {}
    rows = session.execute(
        select(Contact.email, Contact.id).where(
            Contact.workspace_id == workspace.id, Contact.email.in_(wanted)
        )
    )
    return {email: contact_id for email, contact_id in rows if email is not None}


def contact_ids_by_external_id(
    session: Session, workspace: Workspace, system: str, external_ids: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(external_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(ExternalId.external_id, ExternalId.contact_id).where(
            ExternalId.workspace_id == workspace.id,
            ExternalId.system == system,
            among(session, ExternalId.external_id, wanted),
        )
    )
    # A Result has .keys(), so dict(rows) would treat it as a mapping of column names.
    return {external_id: contact_id for external_id, contact_id in rows}  # noqa: C416


@dataclass(frozen=True)
class ContactFilter:
    """What a contact search may ask for; all given criteria must hold."""

    text: str | None = None
    phone: str | None = None
    email: str | None = None
    tag_keys: tuple[str, ...] = ()
    exclude_tag_keys: tuple[str, ...] = ()
    list_id: int | None = None
    lifecycle_stage: str | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    updated_since: datetime | None = None
    # A condition of the condition language, compiled (``contacts.condition_sql``).
    clause: ColumnElement[bool] | None = None


def search_contacts(
    session: Session,
    workspace: Workspace,
    criteria: ContactFilter,
    *,
    before_id: int | None,
    limit: int,
) -> Sequence[Contact]:
    """Newest first; ``before_id`` is the cursor (the last id of the previous page)."""
    query = _filtered(select(Contact), workspace, criteria)
    if before_id is not None:
        query = query.where(Contact.id < before_id)
    return session.scalars(query.order_by(Contact.id.desc()).limit(limit)).all()


def count_contacts(session: Session, workspace: Workspace, criteria: ContactFilter) -> int:
    query = _filtered(select(func.count(Contact.id)), workspace, criteria)
    return int(session.scalar(query) or 0)


def _filtered(query: Select[Any], workspace: Workspace, criteria: ContactFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = [Contact.workspace_id == workspace.id]
    if criteria.clause is not None:
        conditions.append(criteria.clause)
    if criteria.phone is not None:
        conditions.append(Contact.phone == criteria.phone)
    if criteria.email is not None:
        conditions.append(Contact.email == criteria.email)
    if criteria.lifecycle_stage is not None:
        conditions.append(Contact.lifecycle_stage == criteria.lifecycle_stage)
    if criteria.updated_since is not None:
        conditions.append(Contact.updated_at >= criteria.updated_since)
    if criteria.text:
        pattern = f"%{_escape_like(criteria.text)}%"
        conditions.append(
            or_(
                Contact.name.ilike(pattern, escape="\\"),
                Contact.first_name.ilike(pattern, escape="\\"),
                Contact.last_name.ilike(pattern, escape="\\"),
                Contact.email.ilike(pattern, escape="\\"),
                Contact.phone.like(pattern, escape="\\"),
            )
        )
    for key in criteria.tag_keys:
        conditions.append(
            Contact.id.in_(
                select(ContactTag.contact_id)
                .join(Tag, Tag.id == ContactTag.tag_id)
                .where(Tag.workspace_id == workspace.id, Tag.key == key)
            )
        )
    for key in criteria.exclude_tag_keys:
        conditions.append(
            Contact.id.not_in(
                select(ContactTag.contact_id)
                .join(Tag, Tag.id == ContactTag.tag_id)
                .where(Tag.workspace_id == workspace.id, Tag.key == key)
            )
        )
    if criteria.list_id is not None:
        conditions.append(
            Contact.id.in_(
                select(ListMembership.contact_id).where(ListMembership.list_id == criteria.list_id)
            )
        )
    for key, value in criteria.custom_fields.items():
        conditions.append(_custom_field_equals(key, value))
    return query.where(and_(*conditions))


def _custom_field_equals(key: str, value: Any) -> ColumnElement[bool]:
    element = Contact.custom_fields[key]
    condition: ColumnElement[bool]
    if isinstance(value, bool):
        condition = element.as_boolean() == value
    elif isinstance(value, float | int):
        condition = element.as_float() == float(value)
    else:
        condition = element.as_string() == str(value)
    return condition


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def tags_by_key(session: Session, workspace: Workspace, keys: Iterable[str]) -> dict[str, Tag]:
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(select(Tag).where(Tag.workspace_id == workspace.id, Tag.key.in_(wanted)))
    return {t.key: t for t in rows}


def get_tag(session: Session, workspace: Workspace, tag_id: int) -> Tag | None:
    return session.scalar(select(Tag).where(Tag.workspace_id == workspace.id, Tag.id == tag_id))


def list_tags_with_counts(session: Session, workspace: Workspace) -> list[tuple[Tag, int]]:
    counts = (
        select(ContactTag.tag_id, func.count().label("n")).group_by(ContactTag.tag_id).subquery()
    )
    rows = session.execute(
        select(Tag, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.tag_id == Tag.id)
        .where(Tag.workspace_id == workspace.id)
        .order_by(Tag.name)
    )
    return [(tag, int(n)) for tag, n in rows]


def tag_names_of(session: Session, contact_ids: Iterable[int]) -> dict[int, list[str]]:
    wanted = list(set(contact_ids))
    names: dict[int, list[str]] = defaultdict(list)
    if not wanted:
        return names
    rows = session.execute(
        select(ContactTag.contact_id, Tag.name)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(ContactTag.contact_id.in_(wanted))
        .order_by(Tag.name)
    )
    for contact_id, name in rows:
        names[contact_id].append(name)
    return names


def tagged_pairs(
    session: Session, contact_ids: Iterable[int], tag_ids: Iterable[int]
) -> set[tuple[int, int]]:
    contacts, tags = list(set(contact_ids)), list(set(tag_ids))
    if not contacts or not tags:
        return set()
    rows = session.execute(
        select(ContactTag.contact_id, ContactTag.tag_id).where(
            ContactTag.contact_id.in_(contacts), ContactTag.tag_id.in_(tags)
        )
    )
    return {(int(a), int(b)) for a, b in rows}


def remove_contact_tag(session: Session, contact_id: int, tag_id: int) -> bool:
    statement = (
        delete(ContactTag)
        .where(ContactTag.contact_id == contact_id, ContactTag.tag_id == tag_id)
        .returning(ContactTag.tag_id)
    )
    return session.execute(statement).first() is not None


def get_list(session: Session, workspace: Workspace, list_id: int) -> ContactList | None:
    return session.scalar(
        select(ContactList).where(
            ContactList.workspace_id == workspace.id, ContactList.id == list_id
        )
    )


def lists_by_name(
    session: Session, workspace: Workspace, names: Iterable[str]
) -> dict[str, ContactList]:
    wanted = list(set(names))
    if not wanted:
        return {}
    rows = session.scalars(
        select(ContactList).where(
            ContactList.workspace_id == workspace.id, ContactList.name.in_(wanted)
        )
    )
    return {lst.name: lst for lst in rows}


def list_lists_with_counts(session: Session, workspace: Workspace) -> list[tuple[ContactList, int]]:
    counts = (
        select(ListMembership.list_id, func.count().label("n"))
        .group_by(ListMembership.list_id)
        .subquery()
    )
    rows = session.execute(
        select(ContactList, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.list_id == ContactList.id)
        .where(ContactList.workspace_id == workspace.id)
        .order_by(ContactList.name)
    )
    return [(lst, int(n)) for lst, n in rows]


def list_ids_of(session: Session, contact_ids: Iterable[int]) -> dict[int, list[int]]:
    wanted = list(set(contact_ids))
    ids: dict[int, list[int]] = defaultdict(list)
    if not wanted:
        return ids
    rows = session.execute(
        select(ListMembership.contact_id, ListMembership.list_id)
        .where(ListMembership.contact_id.in_(wanted))
        .order_by(ListMembership.list_id)
    )
    for contact_id, list_id in rows:
        ids[contact_id].append(list_id)
    return ids


def member_pairs(
    session: Session, contact_ids: Iterable[int], list_ids: Iterable[int]
) -> set[tuple[int, int]]:
    contacts, lists = list(set(contact_ids)), list(set(list_ids))
    if not contacts or not lists:
        return set()
    rows = session.execute(
        select(ListMembership.contact_id, ListMembership.list_id).where(
            ListMembership.contact_id.in_(contacts), ListMembership.list_id.in_(lists)
        )
    )
    return {(int(a), int(b)) for a, b in rows}


def remove_membership(session: Session, contact_id: int, list_id: int) -> bool:
    statement = (
        delete(ListMembership)
        .where(ListMembership.contact_id == contact_id, ListMembership.list_id == list_id)
        .returning(ListMembership.list_id)
    )
    return session.execute(statement).first() is not None


def field_definitions(session: Session, workspace: Workspace) -> dict[str, CustomFieldDefinition]:
    rows = session.scalars(
        select(CustomFieldDefinition)
        .where(CustomFieldDefinition.workspace_id == workspace.id)
        .order_by(CustomFieldDefinition.key)
    )
    return {d.key: d for d in rows}


def consents_of(session: Session, contact_ids: Iterable[int]) -> dict[int, list[Consent]]:
    wanted = list(set(contact_ids))
    found: dict[int, list[Consent]] = defaultdict(list)
    if not wanted:
        return found
    rows = session.scalars(
        select(Consent)
        .where(Consent.contact_id.in_(wanted))
        .order_by(Consent.channel, Consent.purpose)
    )
    for consent in rows:
        found[consent.contact_id].append(consent)
    return found


def external_ids_of(session: Session, contact_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    wanted = list(set(contact_ids))
    found: dict[int, dict[str, str]] = defaultdict(dict)
    if not wanted:
        return found
    rows = session.execute(
        select(ExternalId.contact_id, ExternalId.system, ExternalId.external_id).where(
            ExternalId.contact_id.in_(wanted)
        )
    )
    for contact_id, system, external_id in rows:
        found[contact_id][system] = external_id
    return found


def list_events(
    session: Session,
    workspace: Workspace,
    contact_id: int,
    *,
    event_type: str | None,
    before_id: int | None,
    limit: int,
) -> Sequence[ContactEvent]:
    query = select(ContactEvent).where(
        ContactEvent.workspace_id == workspace.id, ContactEvent.contact_id == contact_id
    )
    if event_type is not None:
        query = query.where(ContactEvent.event_type == event_type)
    if before_id is not None:
        query = query.where(ContactEvent.id < before_id)
    return session.scalars(query.order_by(ContactEvent.id.desc()).limit(limit)).all()


def count_events_since(
    session: Session, workspace: Workspace, contact_id: int, event_type: str, since: datetime
) -> int:
    """How often ``event_type`` happened (by event time) since ``since``: the index's use case."""
    return int(
        session.scalar(
            select(func.count(ContactEvent.id)).where(
                ContactEvent.workspace_id == workspace.id,
                ContactEvent.contact_id == contact_id,
                ContactEvent.event_type == event_type,
                ContactEvent.occurred_at >= since,
            )
        )
        or 0
    )


def find_event_by_key(
    session: Session, workspace: Workspace, idempotency_key: str
) -> ContactEvent | None:
    return session.scalar(
        select(ContactEvent).where(
            ContactEvent.workspace_id == workspace.id,
            ContactEvent.idempotency_key == idempotency_key,
        )
    )


def contact_rows_by_ids(
    session: Session, workspace: Workspace, contact_ids: Iterable[int]
) -> dict[int, Row[Any]]:
    """Plain rows (no ORM identity map) of many contacts, for bulk comparison in imports."""
    wanted = list(set(contact_ids))
    if not wanted:
        return {}
    table = table_of(Contact)
    rows = session.execute(
        select(table).where(table.c.workspace_id == workspace.id, table.c.id.in_(wanted))
    )
    return {row.id: row for row in rows}


def sending_rows(
    session: Session, contact_ids: Iterable[int]
) -> Sequence[Row[int, bool, str | None]]:
    """``(id, do_not_contact, timezone)`` of many contacts; the ids come from the caller's rows."""
    wanted = list(set(contact_ids))
    if not wanted:
        return []
    return session.execute(
        select(Contact.id, Contact.do_not_contact, Contact.timezone).where(
            among(session, Contact.id, wanted)
        )
    ).all()


def audience_rows(
    session: Session, workspace: Workspace, criteria: ContactFilter, *, after_id: int, limit: int
) -> Sequence[Row[Any]]:
    """Plain rows of the matching contacts with ids above ``after_id``, oldest first: what a
    mass send needs to address and personalise each one, without loading ORM objects."""
    query = _filtered(
        select(
            Contact.id,
            Contact.phone,
            Contact.name,
            Contact.first_name,
            Contact.last_name,
            Contact.locale,
            Contact.timezone,
            Contact.country,
            Contact.custom_fields,
        ),
        workspace,
        criteria,
    )
    return session.execute(
        query.where(Contact.id > after_id).order_by(Contact.id).limit(limit)
    ).all()


def consent_states(
    session: Session, contact_ids: Iterable[int]
) -> Sequence[Row[int, str, str, str]]:
    """``(contact_id, channel, purpose, status)`` of many contacts, as plain rows."""
    wanted = list(set(contact_ids))
    if not wanted:
        return []
    return session.execute(
        select(Consent.contact_id, Consent.channel, Consent.purpose, Consent.status).where(
            among(session, Consent.contact_id, wanted)
        )
    ).all()


def country_rows(session: Session, contact_ids: Iterable[int]) -> Sequence[Row[int, str | None]]:
    wanted = list(set(contact_ids))
    if not wanted:
        return []
    return session.execute(
        select(Contact.id, Contact.country).where(among(session, Contact.id, wanted))
    ).all()


def countries_of_audience(
    session: Session, workspace: Workspace, criteria: ContactFilter
) -> dict[str | None, int]:
    """How many matching contacts per country: a mass send's cost estimate (P9)."""
    counted: Any = select(Contact.country, func.count(Contact.id))
    query = _filtered(counted, workspace, criteria).group_by(Contact.country)
    return {country: int(n) for country, n in session.execute(query)}


def first_events_between(
    session: Session, workspace: Workspace, event_type: str, since: datetime, until: datetime
) -> int:
    """How many contacts had their first ``event_type`` in [since, until)."""
    firsts = (
        select(ContactEvent.contact_id, func.min(ContactEvent.occurred_at).label("first"))
        .where(ContactEvent.workspace_id == workspace.id, ContactEvent.event_type == event_type)
        .group_by(ContactEvent.contact_id)
        .subquery()
    )
    found = session.scalar(
        select(func.count()).where(firsts.c.first >= since, firsts.c.first < until)
    )
    return int(found or 0)
