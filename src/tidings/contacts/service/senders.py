"""The contacts of many people who wrote to us, found or created together (#23, item 7).

A channel's intake hands over a batch of senders, each known by external ids (WhatsApp's
BSUID and ``wa_id``) and perhaps a phone. The common cases are answered with a few statements
per batch: a sender nobody knows becomes a contact (with the fields a first message gives it,
its external ids and a ``contact.created`` event), and a sender whose keys all find one
contact that already holds every one of them needs no write at all. Every other sender — keys
that find different contacts or a merged contact's alias, a phone the contact does not hold,
a profile name that would fill a blank, keys shared with another sender of the batch, fields
that do not validate — is left for the caller to take one by one through
:func:`~tidings.contacts.service.records.upsert_contact`, which decides those cases. Both ways
write the same rows; a differential test holds them to it.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    PHONE_COUNTRY,
    STANDARD_FIELDS,
    LifecycleStage,
    prepare_contact_fields,
)
from tidings.contacts.orm import Contact, ContactAlias, ContactEvent, ExternalId
from tidings.contacts.service.fields import field_specs
from tidings.contacts.service.timeline import causation_depth
from tidings.db.base import allocate_ids, among, bulk_insert, table_of
from tidings.kernel.errors import TidingsError
from tidings.workspaces.orm import Workspace


@dataclass(frozen=True)
class Sender:
    """Someone who wrote to us, as the channel knows them.

    ``key`` is the caller's handle on this sender (its intake row, say). ``on_create`` are the
    fields a contact created for them gets (lead source, profile names); ``fills`` the fields
    that may only fill a blank of a known contact (the profile names again).
    """

    key: Hashable
    external_ids: Mapping[str, str]
    phone: str | None
    on_create: Mapping[str, Any] = field(default_factory=dict)
    fills: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[tuple[str, str], ...]:
        keys = [(f"external:{system}", value) for system, value in self.external_ids.items()]
        if self.phone:
            keys.append(("phone", self.phone))
        return tuple(sorted(keys))


@dataclass
class SendersFound:
    """What became of a batch of senders: the contact of each sender answered here, and the
    senders left for the one-by-one path."""

    contact_of: dict[Hashable, int] = field(default_factory=dict)
    left: list[Hashable] = field(default_factory=list)


def find_or_create_senders(
    session: Session,
    *,
    workspace: Workspace,
    senders: Sequence[Sender],
    source: str,
    now: datetime,
) -> SendersFound:
    """Find or create the contacts of ``senders`` (in the order they wrote: one person's
    first message decides what their new contact is created with)."""
    found = SendersFound()
    groups: dict[tuple[tuple[str, str], ...], list[Sender]] = {}
    for sender in senders:
        groups.setdefault(sender.identity, []).append(sender)
    owners: dict[tuple[str, str], set[tuple[tuple[str, str], ...]]] = {}
    for identity in groups:
        for item in identity:
            owners.setdefault(item, set()).add(identity)
    # Two senders sharing one key but not all: which contact each gets is the matcher's call.
    shared = {
        identity for identities in owners.values() if len(identities) > 1 for identity in identities
    }
    clear = {
        identity: members
        for identity, members in groups.items()
        if identity and identity not in shared and all(_plain(value) for _, value in identity)
    }
    for identity, members in groups.items():
        if identity not in clear:
            found.left.extend(member.key for member in members)
    matches = _existing(session, workspace, clear)
    specs = field_specs(session, workspace)
    new: list[tuple[list[Sender], dict[str, Any]]] = []
    known: dict[int, list[Sender]] = {}
    for identity, members in clear.items():
        hits = matches.get(identity)
        if hits is None:  # an alias, or keys that find more than one contact
            found.left.extend(member.key for member in members)
            continue
        if hits:
            known.setdefault(next(iter(hits)), []).extend(members)
            continue
        first = members[0]
        try:
            fields = prepare_contact_fields(
                {"phone": first.phone, **first.on_create} if first.phone else dict(first.on_create),
                specs=specs,
                region=workspace.default_region,
            )
        except TidingsError:
            found.left.extend(member.key for member in members)
            continue
        if first.phone and fields.get("phone") != first.phone:
            # Stored under another form than the channel's: the matcher decides.
            found.left.extend(member.key for member in members)
            continue
        if any(fields.get(name) is None for member in members[1:] for name in member.fills):
            # A later message would fill a blank of the new contact (an update, on the
            # timeline too): the one-by-one path writes it.
            found.left.extend(member.key for member in members)
            continue
        new.append((members, fields))
    _answer_known(session, workspace, known, found)
    _create(session, workspace, new, found, source=source, now=now)
    return found


def _plain(value: str) -> bool:
    """A key stored as it is given (the one-by-one path trims ids before storing them)."""
    return bool(value) and value == value.strip() and len(value) <= 200


def _existing(
    session: Session,
    workspace: Workspace,
    groups: Mapping[tuple[tuple[str, str], ...], Sequence[Sender]],
) -> dict[tuple[tuple[str, str], ...], set[int] | None]:
    """Per identity, the contacts its keys find (empty: nobody); None when a key is a merged
    contact's alias or the keys find different contacts."""
    wanted: dict[str, set[str]] = {}
    for identity in groups:
        for kind, value in identity:
            wanted.setdefault(kind, set()).add(value)
    owner: dict[tuple[str, str], int] = {}
    for kind, values in wanted.items():
        if kind == "phone":
            hits = repository.contact_ids_by_phone(session, workspace, values)
        else:
            system = kind.removeprefix("external:")
            hits = repository.contact_ids_by_external_id(session, workspace, system, values)
        owner.update(((kind, value), contact_id) for value, contact_id in hits.items())
    every = [item for identity in groups for item in identity]
    aliased = (
        set(
            session.execute(
                select(ContactAlias.kind, ContactAlias.value).where(
                    ContactAlias.workspace_id == workspace.id,
                    ContactAlias.kind.in_(sorted(wanted)),  # the unique index's order
                    among(session, ContactAlias.value, sorted({value for _, value in every})),
                )
            ).all()
        )
        if every
        else set()
    )
    answer: dict[tuple[tuple[str, str], ...], set[int] | None] = {}
    for identity in groups:
        if any(item in aliased for item in identity):
            answer[identity] = None
            continue
        contacts = {owner[item] for item in identity if item in owner}
        answer[identity] = contacts if len(contacts) <= 1 else None
    return answer


def _answer_known(
    session: Session,
    workspace: Workspace,
    known: Mapping[int, list[Sender]],
    found: SendersFound,
) -> None:
    """A known contact is answered here only when nothing of it would change: it holds every
    key its senders came with, and no profile name would fill a blank of it."""
    if not known:
        return
    rows = repository.contact_rows_by_ids(session, workspace, known)
    held = repository.external_ids_of(session, known)
    for contact_id, members in known.items():
        contact = rows.get(contact_id)
        unchanged = contact is not None and all(
            (member.phone is None or contact.phone == member.phone)
            and all(held.get(contact_id, {}).get(s) == v for s, v in member.external_ids.items())
            and all(getattr(contact, name) is not None for name in member.fills)
            for member in members
        )
        if unchanged:
            found.contact_of.update((member.key, contact_id) for member in members)
        else:
            found.left.extend(member.key for member in members)


def _create(
    session: Session,
    workspace: Workspace,
    new: Sequence[tuple[list[Sender], dict[str, Any]]],
    found: SendersFound,
    *,
    source: str,
    now: datetime,
) -> None:
    """Insert the new senders' contacts, external ids and ``contact.created`` events: three
    statements, ids reserved up front."""
    if not new:
        return
    contacts_table = table_of(Contact)
    ids = allocate_ids(session, contacts_table, len(new))
    rows: list[dict[str, Any]] = []
    external: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    depth = causation_depth()
    workspace_id = workspace.id
    for (members, fields), contact_id in zip(new, ids, strict=True):
        row: dict[str, Any] = dict.fromkeys(STANDARD_FIELDS)
        row.update(
            id=contact_id,
            workspace_id=workspace_id,
            lifecycle_stage=LifecycleStage.LEAD.value,
            score=0,
            custom_fields={},
            do_not_contact=False,
            created_at=now,
            updated_at=now,
        )
        row.update({k: v for k, v in fields.items() if k in STANDARD_FIELDS})
        row["country"] = row["country"] or fields.get(PHONE_COUNTRY)
        rows.append(row)
        external.extend(
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "system": system,
                "external_id": value,
            }
            for system, value in members[0].external_ids.items()
        )
        events.append(
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "event_type": "contact.created",
                "occurred_at": now,
                "received_at": now,
                "source": source,
                "properties": {"source": source},
                "idempotency_key": None,
                "depth": depth,
            }
        )
        found.contact_of.update((member.key, contact_id) for member in members)
    bulk_insert(session, contacts_table, rows)
    bulk_insert(session, table_of(ExternalId), external)
    bulk_insert(session, table_of(ContactEvent), events)
