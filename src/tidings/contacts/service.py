"""Use cases of contacts. Every function runs inside the caller's transaction and never commits.

Each change a person would want to see later (tag added, list joined, consent changed …) is
also appended to the contact's timeline in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    PHONE_COUNTRY,
    Channel,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldType,
    FieldSpec,
    LifecycleStage,
    check_choices,
    check_field_key,
    normalize_tag,
    prepare_contact_fields,
    tag_key,
)
from tidings.contacts.orm import (
    Consent,
    Contact,
    ContactEvent,
    ContactList,
    ContactTag,
    CustomFieldDefinition,
    ExternalId,
    ListMembership,
    Tag,
)
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.workspaces.orm import Workspace

MATCH_KEYS = ("external_id", "phone", "email")
EVENT_TYPE_MAX = 64


@dataclass
class ContactView:
    """A contact with everything attached to it, as the API and CLI show it."""

    contact: Contact
    tags: list[str] = field(default_factory=list)
    list_ids: list[int] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    external_ids: dict[str, str] = field(default_factory=dict)


def field_specs(session: Session, workspace: Workspace) -> dict[str, FieldSpec]:
    """The workspace's custom-field definitions in the form the pure rules take."""
    return {
        key: FieldSpec(key, CustomFieldType(d.field_type), tuple(d.choices) if d.choices else None)
        for key, d in repository.field_definitions(session, workspace).items()
    }


def get_contact_or_404(session: Session, workspace: Workspace, contact_id: int) -> Contact:
    """Raises ``TidingsError`` (404) when the contact is not in this workspace."""
    contact = repository.get_contact(session, workspace, contact_id)
    if contact is None:
        raise not_found("contact")
    return contact


def create_contact(
    session: Session, *, workspace: Workspace, data: Mapping[str, Any], source: str, now: datetime
) -> Contact:
    """Create a contact with its tags, lists, consents and external ids.

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
    log_event(session, workspace, contact.id, "contact.created", now, {"source": source}, source)
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
) -> Contact:
    """Change the given fields (absent ones stay); ``updated_at`` moves only on a real change.

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
            session, workspace, contact.id, "contact.updated", now, {"fields": changed}, source
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
) -> tuple[Contact, bool]:
    """Update the contact matched by the first of ``match_on`` that finds one, else create it.

    Returns the contact and whether it was created.

    Raises:
        TidingsError: as :func:`create_contact`; 409 when two keys match different contacts.
    """
    for key in match_on:
        if key not in MATCH_KEYS:
            raise invalid(
                "invalid_match_key", f"match on {', '.join(MATCH_KEYS)}", field="match_on"
            )
    found = _find_match(session, workspace, data, match_on)
    if found is None:
        return create_contact(session, workspace=workspace, data=data, source=source, now=now), True
    updated = update_contact(
        session, workspace=workspace, contact_id=found.id, data=data, source=source, now=now
    )
    return updated, False


def _find_match(
    session: Session, workspace: Workspace, data: Mapping[str, Any], match_on: Sequence[str]
) -> Contact | None:
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
                contact.custom_fields = merged
                changed.append("custom_fields")
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


def ensure_tags(
    session: Session, *, workspace: Workspace, names: Iterable[str], now: datetime
) -> dict[str, Tag]:
    """Return the tags named (case-insensitively), creating missing ones; keyed by tag key.

    Raises:
        TidingsError: 422 for an empty or over-long tag.
    """
    wanted: dict[str, str] = {}
    for name in names:
        wanted.setdefault(tag_key(name), normalize_tag(name))  # the first spelling wins
    existing = repository.tags_by_key(session, workspace, wanted)
    missing = [
        {"workspace_id": workspace.id, "name": name, "key": key, "created_at": now}
        for key, name in wanted.items()
        if key not in existing
    ]
    if missing:
        session.execute(insert(Tag), missing)
        existing = repository.tags_by_key(session, workspace, wanted)
    return existing


def add_tags(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    names: Iterable[str],
    source: str,
    now: datetime,
) -> list[str]:
    """Tag a contact; returns the names newly added (already present ones are left alone).

    Raises:
        TidingsError: 422 for an invalid tag name.
    """
    tags = ensure_tags(session, workspace=workspace, names=names, now=now)
    present = repository.tagged_pairs(session, [contact.id], [t.id for t in tags.values()])
    added = [t for t in tags.values() if (contact.id, t.id) not in present]
    for tag in added:
        session.add(ContactTag(contact_id=contact.id, tag_id=tag.id, created_at=now))
        log_event(session, workspace, contact.id, "tag.added", now, {"tag": tag.name}, source)
    if added:
        contact.updated_at = now
    session.flush()
    return [t.name for t in added]


def remove_tag(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    name: str,
    source: str,
    now: datetime,
) -> bool:
    """Untag a contact; False when it did not carry the tag."""
    tag = repository.tags_by_key(session, workspace, [tag_key(name)]).get(tag_key(name))
    if tag is None or not repository.remove_contact_tag(session, contact.id, tag.id):
        return False
    log_event(session, workspace, contact.id, "tag.removed", now, {"tag": tag.name}, source)
    contact.updated_at = now
    return True


def delete_tag(session: Session, *, workspace: Workspace, tag_id: int) -> None:
    """Delete a tag from the workspace and every contact. Raises ``TidingsError`` (404)."""
    tag = repository.get_tag(session, workspace, tag_id)
    if tag is None:
        raise not_found("tag")
    session.delete(tag)
    session.flush()


def create_list(
    session: Session, *, workspace: Workspace, name: str, description: str, now: datetime
) -> ContactList:
    """Raises ``TidingsError``: empty name (422), name taken (409)."""
    clean = " ".join(name.split())
    if not clean:
        raise invalid("required", "a list needs a name", field="name")
    if clean in repository.lists_by_name(session, workspace, [clean]):
        raise conflict("name_taken", f"a list {clean!r} exists already", field="name")
    contact_list = ContactList(
        workspace_id=workspace.id, name=clean, description=description.strip(), created_at=now
    )
    session.add(contact_list)
    session.flush()
    return contact_list


def get_list_or_404(session: Session, workspace: Workspace, list_id: int) -> ContactList:
    """Raises ``TidingsError`` (404) for a list of another workspace or none."""
    found = repository.get_list(session, workspace, list_id)
    if found is None:
        raise not_found("list", field="list_id")
    return found


def delete_list(session: Session, *, workspace: Workspace, list_id: int) -> None:
    """Raises ``TidingsError`` (404)."""
    session.delete(get_list_or_404(session, workspace, list_id))
    session.flush()


def join_list(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    list_id: int,
    source: str,
    now: datetime,
) -> bool:
    """Add a contact to a list; False when already a member. Raises ``TidingsError`` (404)."""
    contact_list = get_list_or_404(session, workspace, list_id)
    if repository.member_pairs(session, [contact.id], [list_id]):
        return False
    session.add(ListMembership(list_id=list_id, contact_id=contact.id, joined_at=now))
    log_event(
        session,
        workspace,
        contact.id,
        "list.joined",
        now,
        {"list_id": list_id, "list": contact_list.name},
        source,
    )
    contact.updated_at = now
    session.flush()
    return True


def leave_list(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    list_id: int,
    source: str,
    now: datetime,
) -> bool:
    """Remove a contact from a list; False when not a member. Raises ``TidingsError`` (404)."""
    contact_list = get_list_or_404(session, workspace, list_id)
    if not repository.remove_membership(session, contact.id, list_id):
        return False
    log_event(
        session,
        workspace,
        contact.id,
        "list.left",
        now,
        {"list_id": list_id, "list": contact_list.name},
        source,
    )
    contact.updated_at = now
    return True


def set_external_id(
    session: Session, *, workspace: Workspace, contact: Contact, system: str, external_id: str
) -> bool:
    """Record the id another system gives this contact; True when it changed.

    Raises:
        TidingsError: 422 for an empty system or id.
    """
    system, external_id = system.strip().lower(), external_id.strip()
    if not system or not external_id:
        raise invalid("invalid_external_id", "system and id are required", field="external_ids")
    current = repository.external_ids_of(session, [contact.id]).get(contact.id, {})
    if current.get(system) == external_id:
        return False
    if system in current:
        for row in session.query(ExternalId).filter_by(contact_id=contact.id, system=system):
            row.external_id = external_id
    else:
        session.add(
            ExternalId(
                workspace_id=workspace.id,
                contact_id=contact.id,
                system=system,
                external_id=external_id,
            )
        )
    session.flush()
    return True


def set_consent(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    channel: Channel,
    purpose: ConsentPurpose,
    status: ConsentStatus,
    source: str,
    now: datetime,
) -> bool:
    """Record opt-in or opt-out for one channel and purpose with its source and time (C1).

    Returns True when the status changed; the change is also written to the timeline.
    """
    existing = next(
        (
            c
            for c in repository.consents_of(session, [contact.id]).get(contact.id, [])
            if c.channel == channel.value and c.purpose == purpose.value
        ),
        None,
    )
    if existing is not None and existing.status == status.value:
        return False
    previous = existing.status if existing is not None else None
    if existing is None:
        existing = Consent(
            workspace_id=workspace.id,
            contact_id=contact.id,
            channel=channel.value,
            purpose=purpose.value,
        )
        session.add(existing)
    existing.status, existing.source, existing.recorded_at = status.value, source, now
    log_event(
        session,
        workspace,
        contact.id,
        "consent.changed",
        now,
        {
            "channel": channel.value,
            "purpose": purpose.value,
            "status": status.value,
            "previous": previous,
            "source": source,
        },
        source,
    )
    contact.updated_at = now
    session.flush()
    return True


def opt_out(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    channel: Channel,
    source: str,
    now: datetime,
) -> None:
    """Opt a contact out of every purpose on one channel (P5)."""
    for purpose in ConsentPurpose:
        set_consent(
            session,
            workspace=workspace,
            contact=contact,
            channel=channel,
            purpose=purpose,
            status=ConsentStatus.OPTED_OUT,
            source=source,
            now=now,
        )


def create_field_definition(
    session: Session,
    *,
    workspace: Workspace,
    key: str,
    label: str,
    field_type: CustomFieldType,
    choices: list[str] | None,
    now: datetime,
) -> CustomFieldDefinition:
    """Define a typed custom field. Raises ``TidingsError``: bad key/choices (422), taken (409)."""
    check_field_key(key)
    if key in repository.field_definitions(session, workspace):
        raise conflict("key_taken", f"a custom field {key!r} exists already", field="key")
    definition = CustomFieldDefinition(
        workspace_id=workspace.id,
        key=key,
        label=label.strip() or key,
        field_type=field_type.value,
        choices=check_choices(field_type, choices),
        created_at=now,
    )
    session.add(definition)
    session.flush()
    return definition


def delete_field_definition(session: Session, *, workspace: Workspace, key: str) -> None:
    """Forget a custom field definition; stored values stay in contacts' data.

    Raises:
        TidingsError: 404 for an unknown key.
    """
    definition = repository.field_definitions(session, workspace).get(key)
    if definition is None:
        raise not_found("custom field", field="key")
    session.delete(definition)
    session.flush()


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
    )
    session.add(event)
    session.flush()
    return event, True


def count_all_contacts(session: Session, workspace: Workspace) -> int:
    return repository.count_contacts(session, workspace, repository.ContactFilter())
