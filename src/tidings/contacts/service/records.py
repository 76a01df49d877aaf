"""Contacts themselves: create, update, upsert, delete, describe (C1, C2).

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    PHONE_COUNTRY,
    Channel,
    ConsentPurpose,
    ConsentStatus,
    LifecycleStage,
    prepare_contact_fields,
)
from tidings.contacts.orm import (
    Consent,
    Contact,
)
from tidings.contacts.service.consent import set_consent, set_external_id
from tidings.contacts.service.fields import field_specs
from tidings.contacts.service.labels import add_tags, join_list
from tidings.contacts.service.timeline import log_event
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.kernel.timestamps import format_timestamp
from tidings.workspaces.orm import Workspace

MATCH_KEYS = ("external_id", "phone", "email")


@dataclass
class ContactView:
    """A contact with everything attached to it, as the API and CLI show it."""

    contact: Contact
    tags: list[str] = field(default_factory=list)
    list_ids: list[int] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    external_ids: dict[str, str] = field(default_factory=dict)


def get_contact_or_404(session: Session, workspace: Workspace, contact_id: int) -> Contact:
    """Raises ``TidingsError`` (404) when the contact is not in this workspace."""
    contact = repository.get_contact(session, workspace, contact_id)
    if contact is None:
        raise not_found("contact")
    return contact


def hold_contacts(
    session: Session, workspace: Workspace, contact_ids: Iterable[int]
) -> list[Contact]:
    """Load these contacts into the session together. While the caller keeps the list, the use
    cases that act on them (``update_contact`` …) find them without a query each: the session
    holds objects only weakly, so a contact nobody keeps is read again on every action."""
    return repository.contacts_by_id(session, workspace, sorted(set(contact_ids)))


def stored_values(
    session: Session, workspace: Workspace, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The stored form of the given fields, flat (``custom_fields.<key>`` for custom ones):
    what a contact would hold if they were saved, for comparing with what it holds.

    Raises:
        TidingsError: 422 naming the first offending field.
    """
    prepared = prepare_contact_fields(
        data, specs=field_specs(session, workspace), region=workspace.default_region
    )
    flat = {k: v for k, v in prepared.items() if k not in (PHONE_COUNTRY, "custom_fields")}
    flat.update({f"custom_fields.{k}": v for k, v in prepared.get("custom_fields", {}).items()})
    return flat


def current_values(contact: Contact, names: Iterable[str]) -> dict[str, Any]:
    """What the contact holds for these flat field names."""
    return {
        name: (
            contact.custom_fields.get(name.removeprefix("custom_fields."))
            if name.startswith("custom_fields.")
            else getattr(contact, name)
        )
        for name in names
    }


def create_contact(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    source: str,
    now: datetime,
    as_of: datetime | None = None,
) -> Contact:
    """Create a contact with its tags, lists, consents and external ids; ``as_of`` is when the
    values changed where they came from, when that is known (see :func:`field_change_times`).

    Raises:
        TidingsError: invalid fields (422 naming the field), phone/e-mail/external id already
            used by another contact (409).
    """
    fields = prepare_contact_fields(
        data, specs=field_specs(session, workspace), region=workspace.default_region
    )
    _check_identity_free(session, workspace, fields, data.get("external_ids") or {}, None)
    contact = Contact(
        workspace_id=workspace.id,
        lifecycle_stage=LifecycleStage.LEAD.value,
        score=0,
        custom_fields={},
        do_not_contact=False,
        created_at=now,
        updated_at=now,
    )
    _assign(contact, fields)
    session.add(contact)
    session.flush()
    log_event(
        session,
        workspace,
        contact.id,
        "contact.created",
        now,
        {"source": source, **_as_of(as_of)},
        source,
    )
    _attach(session, workspace, contact, data, source=source, now=now)
    return contact


def update_contact(
    session: Session,
    *,
    workspace: Workspace,
    contact_id: int,
    data: Mapping[str, Any],
    source: str,
    now: datetime,
    as_of: datetime | None = None,
) -> Contact:
    """Change the given fields (absent ones stay); ``updated_at`` moves only on a real change.
    ``as_of``: when the values changed where they came from, when that is known.

    Raises:
        TidingsError: unknown contact (404), invalid fields (422), identity clash (409).
    """
    contact = get_contact_or_404(session, workspace, contact_id)
    fields = prepare_contact_fields(
        data, specs=field_specs(session, workspace), region=workspace.default_region
    )
    _check_identity_free(session, workspace, fields, data.get("external_ids") or {}, contact.id)
    changed = _assign(contact, fields)
    attached = _attach(session, workspace, contact, data, source=source, now=now)
    if changed:
        log_event(
            session,
            workspace,
            contact.id,
            "contact.updated",
            now,
            {"fields": changed, **_as_of(as_of)},
            source,
        )
    if changed or attached:
        contact.updated_at = now
    session.flush()
    return contact


def upsert_contact(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    match_on: Sequence[str],
    source: str,
    now: datetime,
    on_create: Mapping[str, Any] | None = None,
    as_of: datetime | None = None,
    keep_newer: Callable[[Contact, Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> tuple[Contact, bool]:
    """Update the contact matched by the first of ``match_on`` that finds one, else create it
    (with ``on_create`` added: fields only a new contact gets, such as its lead source).
    ``keep_newer`` takes the found contact and the data, and gives back the data less the
    fields that must not be overwritten (changed here after ``as_of``).

    Returns the contact and whether it was created.

    Raises:
        TidingsError: as :func:`create_contact`; 409 when two keys match different contacts.
    """
    for key in match_on:
        if key not in MATCH_KEYS:
            raise invalid(
                "invalid_match_key", f"match on {', '.join(MATCH_KEYS)}", field="match_on"
            )
    found = find_match(session, workspace, data, match_on)
    if found is None:
        created = create_contact(
            session,
            workspace=workspace,
            data={**data, **(on_create or {})},
            source=source,
            now=now,
            as_of=as_of,
        )
        return created, True
    if keep_newer is not None:
        data = keep_newer(found, data)
    updated = update_contact(
        session,
        workspace=workspace,
        contact_id=found.id,
        data=_without_aliases(session, workspace, found, data),
        source=source,
        now=now,
        as_of=as_of,
    )
    return updated, False


def _as_of(moment: datetime | None) -> dict[str, str]:
    return {} if moment is None else {"as_of": format_timestamp(moment)}


def field_change_times(
    session: Session, workspace: Workspace, contact: Contact
) -> dict[str, datetime]:
    """When each of the contact's fields last changed, by its name in the timeline (a custom
    field by its key): the source's own time where the change said it (``as_of``), else the
    time it was written here. A field never changed since creation is absent; its time is
    the creation's (``"*"``)."""
    times: dict[str, datetime] = {}
    for event in repository.field_change_events(session, workspace, contact.id):
        moment = _event_time(event.properties, event.occurred_at)
        if event.event_type == "contact.created":
            times["*"] = moment
            continue
        for name in event.properties.get("fields") or ():
            if name not in times or moment > times[name]:
                times[name] = moment
    times.setdefault("*", contact.created_at)
    return times


def _event_time(properties: Mapping[str, Any], occurred_at: datetime) -> datetime:
    stated = properties.get("as_of")
    if isinstance(stated, str):
        try:
            return datetime.fromisoformat(stated)
        except ValueError:
            pass
    return occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)


def _without_aliases(
    session: Session, workspace: Workspace, contact: Contact, data: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``data`` less the identities that are the contact's aliases (what a merge brought it):
    they found the contact, and must not replace its own phone, e-mail or external ids."""
    aliases = repository.aliases_of(session, workspace, contact.id)
    if not aliases:
        return data
    kept = dict(data)
    fields = prepare_contact_fields(
        {k: data[k] for k in ("phone", "email") if data.get(k)},
        specs={},
        region=workspace.default_region,
    )
    for kind in ("phone", "email"):
        if fields.get(kind) and (kind, fields[kind]) in aliases:
            kept.pop(kind, None)
    external = {
        system: value
        for system, value in (data.get("external_ids") or {}).items()
        if (f"external:{system}", str(value)) not in aliases
    }
    if "external_ids" in kept:
        kept["external_ids"] = external
    return kept


def find_match(
    session: Session, workspace: Workspace, data: Mapping[str, Any], match_on: Sequence[str]
) -> Contact | None:
    """The contact the first keys of ``match_on`` find (``external_id`` reads
    ``data["external_ids"]``). Raises ``TidingsError`` (409) when keys find different ones."""
    fields = prepare_contact_fields(
        {k: data[k] for k in ("phone", "email") if k in data},
        specs={},
        region=workspace.default_region,
    )
    matches: dict[str, Contact] = {}
    for key in match_on:
        contact = None
        if key == "phone" and fields.get("phone"):
            contact = repository.find_contact_by_phone(session, workspace, fields["phone"])
        elif key == "email" and fields.get("email"):
            contact = repository.find_contact_by_email(session, workspace, fields["email"])
        elif key == "external_id":
            for system, external_id in (data.get("external_ids") or {}).items():
                contact = repository.find_contact_by_external_id(
                    session, workspace, system, str(external_id)
                )
                if contact is not None:
                    break
        if contact is not None:
            matches[key] = contact
    distinct = {c.id: c for c in matches.values()}
    if len(distinct) > 1:
        described = ", ".join(f"{k} → contact {c.id}" for k, c in matches.items())
        raise conflict("ambiguous_match", f"the keys match different contacts: {described}")
    return next(iter(distinct.values()), None)


def _check_identity_free(
    session: Session,
    workspace: Workspace,
    fields: Mapping[str, Any],
    external_ids: Mapping[str, Any],
    own_id: int | None,
) -> None:
    if fields.get("phone"):
        other = repository.find_contact_by_phone(session, workspace, fields["phone"])
        if other is not None and other.id != own_id:
            raise conflict(
                "phone_taken", f"{fields['phone']} belongs to contact {other.id}", field="phone"
            )
    if fields.get("email"):
        other = repository.find_contact_by_email(session, workspace, fields["email"])
        if other is not None and other.id != own_id:
            raise conflict(
                "email_taken", f"{fields['email']} belongs to contact {other.id}", field="email"
            )
    for system, external_id in external_ids.items():
        other = repository.find_contact_by_external_id(session, workspace, system, str(external_id))
        if other is not None and other.id != own_id:
            raise conflict(
                "external_id_taken",
                f"{system} id {external_id} belongs to contact {other.id}",
                field=f"external_ids.{system}",
            )


def _assign(contact: Contact, fields: Mapping[str, Any]) -> list[str]:
    """Apply prepared fields; return the names of those that really changed."""
    changed: list[str] = []
    for name, value in fields.items():
        if name == PHONE_COUNTRY:
            continue
        if name == "custom_fields":
            merged = {**contact.custom_fields}
            for key, item in value.items():
                if item is None:
                    merged.pop(key, None)
                else:
                    merged[key] = item
            if merged != contact.custom_fields:
                # Each custom field by its key, so that "field changed" rules can name one.
                changed.extend(
                    key
                    for key in sorted(set(merged) | set(contact.custom_fields))
                    if merged.get(key) != contact.custom_fields.get(key)
                )
                contact.custom_fields = merged
        elif getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.append(name)
    if fields.get(PHONE_COUNTRY) and not contact.country:
        contact.country = fields[PHONE_COUNTRY]
    return changed


def _attach(
    session: Session,
    workspace: Workspace,
    contact: Contact,
    data: Mapping[str, Any],
    *,
    source: str,
    now: datetime,
) -> bool:
    """Add the tags, lists, external ids and consents given with a contact; True if any changed."""
    changed = False
    if data.get("tags"):
        changed |= bool(
            add_tags(
                session,
                workspace=workspace,
                contact=contact,
                names=data["tags"],
                source=source,
                now=now,
            )
        )
    for list_id in data.get("list_ids") or []:
        changed |= join_list(
            session, workspace=workspace, contact=contact, list_id=list_id, source=source, now=now
        )
    for system, external_id in (data.get("external_ids") or {}).items():
        changed |= set_external_id(
            session,
            workspace=workspace,
            contact=contact,
            system=system,
            external_id=str(external_id),
        )
    for consent in data.get("consents") or []:
        changed |= set_consent(
            session,
            workspace=workspace,
            contact=contact,
            channel=Channel(consent["channel"]),
            purpose=ConsentPurpose(consent["purpose"]),
            status=ConsentStatus(consent["status"]),
            source=consent.get("source") or source,
            now=now,
        )
    return changed


def delete_contact(session: Session, *, workspace: Workspace, contact_id: int) -> None:
    """Remove a contact and everything attached (its timeline too).

    Raises:
        TidingsError: 404 for a contact of another workspace or none.
    """
    session.delete(get_contact_or_404(session, workspace, contact_id))
    session.flush()


def describe_contacts(session: Session, contacts: Sequence[Contact]) -> list[ContactView]:
    """Load tags, lists, consents and external ids for many contacts in four queries."""
    ids = [c.id for c in contacts]
    tags = repository.tag_names_of(session, ids)
    lists = repository.list_ids_of(session, ids)
    consents = repository.consents_of(session, ids)
    external = repository.external_ids_of(session, ids)
    return [
        ContactView(
            c,
            tags.get(c.id, []),
            lists.get(c.id, []),
            consents.get(c.id, []),
            external.get(c.id, {}),
        )
        for c in contacts
    ]


def count_all_contacts(session: Session, workspace: Workspace) -> int:
    return repository.count_contacts(session, workspace, repository.ContactFilter())
