"""Audiences of mass sends: which contacts a broadcast addresses, page by page.

An audience is the contact search's own criteria — all of these tags, none of those, a list, a
lifecycle stage, custom-field values — checked here with errors that name the field, and
optionally a ``condition`` of the condition language (checked and compiled by the caller, who
knows the segments: ``with_condition``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.condition_sql import Sources, matching
from tidings.contacts.domain import prepare_custom_fields, tag_key
from tidings.contacts.repository import ContactFilter as ContactFilter
from tidings.contacts.service.fields import field_specs
from tidings.kernel.errors import invalid
from tidings.workspaces.orm import Workspace

AUDIENCE_KEYS = ("tags", "exclude_tags", "list_id", "lifecycle_stage", "fields", "condition")


@dataclass(frozen=True)
class Member:
    """One addressed contact, as plain values (no ORM identity map for a million of them)."""

    id: int
    phone: str | None
    name: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    timezone: str | None
    country: str | None
    custom_fields: Mapping[str, Any]


def audience_criteria(
    session: Session, workspace: Workspace, audience: Mapping[str, Any]
) -> ContactFilter:
    """The contact criteria an audience stands for.

    Raises:
        TidingsError: 422 naming ``audience.<key>`` for an unknown key, tag list, list or
            custom field, or a value of the wrong type.
    """
    for key in audience:
        if key not in AUDIENCE_KEYS:
            raise invalid(
                "unknown_key",
                f"an audience has {', '.join(AUDIENCE_KEYS)}",
                field=f"audience.{key}",
            )
    tags = _words(audience.get("tags"), "audience.tags")
    excluded = _words(audience.get("exclude_tags"), "audience.exclude_tags")
    list_id = audience.get("list_id")
    if list_id is not None:
        if not isinstance(list_id, int) or isinstance(list_id, bool):
            raise invalid("invalid_type", "list_id is a list's id", field="audience.list_id")
        if repository.get_list(session, workspace, list_id) is None:
            raise invalid("unknown_list", f"no list {list_id}", field="audience.list_id")
    stage = audience.get("lifecycle_stage")
    if stage is not None and not isinstance(stage, str):
        raise invalid("invalid_type", "a lifecycle stage", field="audience.lifecycle_stage")
    fields = audience.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise invalid("invalid_type", "fields maps keys to values", field="audience.fields")
    specs = field_specs(session, workspace)
    custom: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in specs:
            raise invalid(
                "unknown_field", f"no custom field {key!r}", field=f"audience.fields.{key}"
            )
        custom[key] = prepare_custom_fields({key: value}, specs)[key]
    return ContactFilter(
        tag_keys=tuple(tag_key(t) for t in tags),
        exclude_tag_keys=tuple(tag_key(t) for t in excluded),
        list_id=list_id,
        lifecycle_stage=stage,
        custom_fields=custom,
    )


def _words(value: Any, field: str) -> Sequence[str]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise invalid("invalid_type", "a list of tag names", field=field)
    return value


def count_audience(session: Session, workspace: Workspace, criteria: ContactFilter) -> int:
    return repository.count_contacts(session, workspace, criteria)


def audience_page(
    session: Session, workspace: Workspace, criteria: ContactFilter, *, after_id: int, limit: int
) -> list[Member]:
    """The next ``limit`` matching contacts after ``after_id``, in id order (a resumable cursor)."""
    return [
        Member(
            id=row.id,
            phone=row.phone,
            name=row.name,
            first_name=row.first_name,
            last_name=row.last_name,
            locale=row.locale,
            timezone=row.timezone,
            country=row.country,
            custom_fields=row.custom_fields or {},
        )
        for row in repository.audience_rows(
            session, workspace, criteria, after_id=after_id, limit=limit
        )
    ]


def whatsapp_ids(session: Session, contact_ids: Sequence[int]) -> dict[int, str]:
    """The WhatsApp ids of contacts without a phone number (they wrote from a username)."""
    return {
        contact_id: ids["whatsapp"]
        for contact_id, ids in repository.external_ids_of(session, contact_ids).items()
        if "whatsapp" in ids
    }


def audience_countries(
    session: Session, workspace: Workspace, criteria: ContactFilter
) -> dict[str | None, int]:
    """How many contacts of the audience live in each country (for a cost estimate, P9)."""
    return repository.countries_of_audience(session, workspace, criteria)


def with_condition(
    session: Session,
    workspace: Workspace,
    criteria: ContactFilter,
    condition: Any,
    *,
    as_of: datetime,
    sources: Sources,
) -> ContactFilter:
    """The criteria narrowed by a condition, compiled for this database at ``as_of``."""
    clause = matching(
        condition,
        workspace_id=workspace.id,
        as_of=as_of,
        dialect=session.get_bind().dialect.name,
        sources=sources,
    )
    return replace(criteria, clause=clause)
