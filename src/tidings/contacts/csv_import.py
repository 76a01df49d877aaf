"""Writing a batch of checked CSV rows, and reading contacts out as CSV (X5).

One batch is written with set-based statements (a few queries per batch, not per row) inside
the caller's transaction. Rows are upserts: a row that matches a contact (external id, then
phone, then e-mail) updates it, and only what differs is written, so importing the same file
twice changes nothing the second time.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.csv_format import ContactRow, RowProblem, guarded_cell
from tidings.contacts.domain import PHONE_COUNTRY, STANDARD_FIELDS, LifecycleStage, tag_key
from tidings.contacts.orm import (
    Consent,
    Contact,
    ContactEvent,
    ContactList,
    ContactTag,
    ExternalId,
    ListMembership,
)
from tidings.contacts.service import ensure_tags
from tidings.db.base import allocate_ids, bulk_insert, table_of
from tidings.workspaces.orm import Workspace

CONSENT_STATUS = {True: "opted_in", False: "opted_out"}


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, RowProblem]] = field(default_factory=list)


def split_on_repeated_keys(rows: Sequence[ContactRow]) -> Iterator[list[ContactRow]]:
    """Chunks in which no phone/e-mail/external id repeats, so each chunk is set-based safe.

    A key repeated later in the file then finds the contact the earlier row wrote.
    """
    chunk: list[ContactRow] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        keys = set(row.identity_keys())
        if keys & seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(row)
        seen |= keys
    if chunk:
        yield chunk


def write_rows(
    session: Session,
    *,
    workspace: Workspace,
    rows: Sequence[ContactRow],
    source: str,
    now: datetime,
) -> BatchOutcome:
    """Upsert checked rows. Runs inside the caller's transaction."""
    outcome = BatchOutcome()
    for chunk in split_on_repeated_keys(rows):
        _write_chunk(session, workspace, chunk, source, now, outcome)
        session.flush()
    return outcome


def _write_chunk(
    session: Session,
    workspace: Workspace,
    rows: list[ContactRow],
    source: str,
    now: datetime,
    outcome: BatchOutcome,
) -> None:
    matched, rows = _match(session, workspace, rows, outcome)
    existing = repository.contact_rows_by_ids(
        session, workspace, [i for i in matched.values() if i]
    )
    touched: set[int] = set()
    events: list[dict[str, Any]] = []
    new_rows = [r for r in rows if matched[r.line] is None]
    ids = _insert_contacts(session, workspace, new_rows, now)
    for row, contact_id in zip(new_rows, ids, strict=True):
        matched[row.line] = contact_id
        events.append(
            _event(workspace, contact_id, "contact.created", now, {"source": source}, source)
        )
    updates = []
    for row in rows:
        contact = existing.get(matched[row.line] or 0)
        if contact is not None:
            changes = _field_changes(contact, row.fields)
            if changes:
                updates.append({"id": contact.id, **changes, "updated_at": now})
                touched.add(contact.id)
                events.append(
                    _event(
                        workspace,
                        contact.id,
                        "contact.updated",
                        now,
                        {"fields": sorted(changes)},
                        source,
                    )
                )
    if updates:
        _update_by_id(session, updates)
    ids_by_line = {line: cid for line, cid in matched.items() if cid is not None}
    touched |= _apply_tags(session, workspace, rows, ids_by_line, source, now, events, set(ids))
    touched |= _apply_lists(session, workspace, rows, ids_by_line, source, now, events, set(ids))
    touched |= _apply_external_ids(session, workspace, rows, ids_by_line)
    touched |= _apply_consents(session, workspace, rows, ids_by_line, source, now, events)
    if events:
        bulk_insert(session, table_of(ContactEvent), events)
    late = touched - {u["id"] for u in updates} - set(ids)
    if late:
        _update_by_id(session, [{"id": i, "updated_at": now} for i in late])
    outcome.created += len(new_rows)
    changed_existing = touched - set(ids)
    outcome.updated += len(changed_existing)
    outcome.unchanged += len(rows) - len(new_rows) - len(changed_existing)


def _update_by_id(session: Session, updates: list[dict[str, Any]]) -> None:
    """Core executemany UPDATEs, grouped by the set of columns each one changes."""
    table = table_of(Contact)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in updates:
        columns = tuple(sorted(k for k in item if k != "id"))
        groups.setdefault(columns, []).append({"row_id": item["id"], **item})
    for columns, items in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({c: bindparam(c) for c in columns})
        )
        session.connection().execute(statement, items)


def _match(
    session: Session, workspace: Workspace, rows: list[ContactRow], outcome: BatchOutcome
) -> tuple[dict[int, int | None], list[ContactRow]]:
    """Find each row's contact; rows whose keys point at different contacts become errors."""
    by_phone = repository.contact_ids_by_phone(
        session, workspace, [r.fields["phone"] for r in rows if r.fields.get("phone")]
    )
    by_email = repository.contact_ids_by_email(
        session, workspace, [r.fields["email"] for r in rows if r.fields.get("email")]
    )
    systems = {s for r in rows for s in r.external_ids}
    by_external = {
        s: repository.contact_ids_by_external_id(
            session, workspace, s, [r.external_ids[s] for r in rows if s in r.external_ids]
        )
        for s in systems
    }
    matched: dict[int, int | None] = {}
    kept: list[ContactRow] = []
    for row in rows:
        found: dict[str, int] = {}
        for system, value in row.external_ids.items():
            if value in by_external[system]:
                found[f"external_ids.{system}"] = by_external[system][value]
        if row.fields.get("phone") in by_phone:
            found["phone"] = by_phone[row.fields["phone"]]
        if row.fields.get("email") in by_email:
            found["email"] = by_email[row.fields["email"]]
        if len(set(found.values())) > 1:
            described = ", ".join(f"{k} → contact {v}" for k, v in found.items())
            outcome.errors.append(
                (
                    row.line,
                    RowProblem(
                        "",
                        "",
                        "ambiguous_match",
                        f"the row matches different contacts: {described}",
                    ),
                )
            )
            continue
        matched[row.line] = next(iter(found.values()), None)
        kept.append(row)
    return matched, kept


def _insert_contacts(
    session: Session, workspace: Workspace, rows: list[ContactRow], now: datetime
) -> list[int]:
    if not rows:
        return []
    values = []
    for row in rows:
        item: dict[str, Any] = dict.fromkeys(STANDARD_FIELDS)
        item.update(
            workspace_id=workspace.id,
            lifecycle_stage=LifecycleStage.LEAD.value,
            score=0,
            do_not_contact=False,
            custom_fields={},
            created_at=now,
            updated_at=now,
        )
        item.update({k: v for k, v in row.fields.items() if v is not None and k != PHONE_COUNTRY})
        if not item["country"]:
            item["country"] = row.fields.get(PHONE_COUNTRY)
        values.append(item)
    # Core executemany with ids reserved up front: RETURNING with ordered parameters cost
    # more than the insert itself.
    table = table_of(Contact)
    ids = allocate_ids(session, table, len(values))
    for item, new_id in zip(values, ids, strict=True):
        item["id"] = new_id
    bulk_insert(session, table, values)
    return ids


def _field_changes(contact: Row[Any], fields: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if name == PHONE_COUNTRY:
            if value and not contact.country:
                changes["country"] = value
            continue
        if name == "custom_fields":
            merged = {**contact.custom_fields, **{k: v for k, v in value.items() if v is not None}}
            if merged != contact.custom_fields:
                changes["custom_fields"] = merged
        elif value is not None and getattr(contact, name) != value:
            changes[name] = value
    return changes


def _event(
    workspace: Workspace,
    contact_id: int,
    kind: str,
    now: datetime,
    properties: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    return {
        "workspace_id": workspace.id,
        "contact_id": contact_id,
        "event_type": kind,
        "occurred_at": now,
        "received_at": now,
        "source": source,
        "properties": properties,
        "idempotency_key": None,
    }


def _apply_tags(
    session: Session,
    workspace: Workspace,
    rows: list[ContactRow],
    ids: dict[int, int],
    source: str,
    now: datetime,
    events: list[dict[str, Any]],
    fresh: set[int],
) -> set[int]:
    names = {n for r in rows for n in r.tags}
    if not names:
        return set()
    tags = ensure_tags(session, workspace=workspace, names=names, now=now)
    wanted = {(ids[r.line], tags[tag_key(n)].id) for r in rows if r.line in ids for n in r.tags}
    old = {c for c, _ in wanted} - fresh  # contacts created in this batch carry no tags yet
    present = repository.tagged_pairs(session, old, {t for _, t in wanted})
    missing = sorted(wanted - present)
    if missing:
        bulk_insert(
            session,
            table_of(ContactTag),
            [{"contact_id": c, "tag_id": t, "created_at": now} for c, t in missing],
        )
        by_id = {t.id: t.name for t in tags.values()}
        events.extend(
            _event(workspace, c, "tag.added", now, {"tag": by_id[t]}, source) for c, t in missing
        )
    return {c for c, _ in missing}


def _apply_lists(
    session: Session,
    workspace: Workspace,
    rows: list[ContactRow],
    ids: dict[int, int],
    source: str,
    now: datetime,
    events: list[dict[str, Any]],
    fresh: set[int],
) -> set[int]:
    names = {n for r in rows for n in r.lists}
    if not names:
        return set()
    lists = repository.lists_by_name(session, workspace, names)
    absent = names - set(lists)
    if absent:
        bulk_insert(
            session,
            table_of(ContactList),
            [
                {"workspace_id": workspace.id, "name": n, "description": "", "created_at": now}
                for n in sorted(absent)
            ],
        )
        lists = repository.lists_by_name(session, workspace, names)
    wanted = {(ids[r.line], lists[n].id) for r in rows if r.line in ids for n in r.lists}
    old = {c for c, _ in wanted} - fresh
    present = repository.member_pairs(session, old, {lst for _, lst in wanted})
    missing = sorted(wanted - present)
    if missing:
        bulk_insert(
            session,
            table_of(ListMembership),
            [{"contact_id": c, "list_id": lst, "joined_at": now} for c, lst in missing],
        )
        by_id = {lst.id: lst.name for lst in lists.values()}
        events.extend(
            _event(workspace, c, "list.joined", now, {"list_id": lst, "list": by_id[lst]}, source)
            for c, lst in missing
        )
    return {c for c, _ in missing}


def _apply_external_ids(
    session: Session, workspace: Workspace, rows: list[ContactRow], ids: dict[int, int]
) -> set[int]:
    wanted = {(ids[r.line], s): v for r in rows if r.line in ids for s, v in r.external_ids.items()}
    if not wanted:
        return set()
    current = repository.external_ids_of(session, {c for c, _ in wanted})
    inserts, changed = [], set()
    for (contact_id, system), value in wanted.items():
        stored = current.get(contact_id, {}).get(system)
        if stored == value:
            continue
        changed.add(contact_id)
        if stored is None:
            inserts.append(
                {
                    "workspace_id": workspace.id,
                    "contact_id": contact_id,
                    "system": system,
                    "external_id": value,
                }
            )
        else:
            session.execute(
                update(ExternalId)
                .where(ExternalId.contact_id == contact_id, ExternalId.system == system)
                .values(external_id=value)
            )
    if inserts:
        bulk_insert(session, table_of(ExternalId), inserts)
    return changed


def _apply_consents(
    session: Session,
    workspace: Workspace,
    rows: list[ContactRow],
    ids: dict[int, int],
    source: str,
    now: datetime,
    events: list[dict[str, Any]],
) -> set[int]:
    wanted = {
        (ids[r.line], ch, p): ok
        for r in rows
        if r.line in ids
        for (ch, p), ok in r.consents.items()
    }
    if not wanted:
        return set()
    current = {
        (c.contact_id, c.channel, c.purpose): c
        for found in repository.consents_of(session, {k[0] for k in wanted}).values()
        for c in found
    }
    inserts, changed = [], set()
    for (contact_id, channel, purpose), opted_in in wanted.items():
        status = CONSENT_STATUS[opted_in]
        stored = current.get((contact_id, channel, purpose))
        if stored is not None and stored.status == status:
            continue
        changed.add(contact_id)
        if stored is None:
            inserts.append(
                {
                    "workspace_id": workspace.id,
                    "contact_id": contact_id,
                    "channel": channel,
                    "purpose": purpose,
                    "status": status,
                    "source": source,
                    "recorded_at": now,
                }
            )
        else:
            stored.status, stored.source, stored.recorded_at = status, source, now
        events.append(
            _event(
                workspace,
                contact_id,
                "consent.changed",
                now,
                {
                    "channel": channel,
                    "purpose": purpose,
                    "status": status,
                    "previous": stored.status if stored else None,
                    "source": source,
                },
                source,
            )
        )
    if inserts:
        bulk_insert(session, table_of(Consent), inserts)
    return changed


def export_columns(session: Session, workspace: Workspace) -> list[str]:
    """Header of an export; the import reads every one of these columns back."""
    specs = sorted(repository.field_definitions(session, workspace))
    systems = sorted(
        set(
            session.scalars(
                select(ExternalId.system).where(ExternalId.workspace_id == workspace.id)
            )
        )
    )
    consents = [
        f"consent.{ch}.{p}"
        for ch in ("whatsapp", "email", "sms")
        for p in ("marketing", "transactional")
    ]
    return [
        "id",
        *STANDARD_FIELDS,
        "tags",
        "lists",
        *[f"custom_fields.{k}" for k in specs],
        *[f"external_ids.{s}" for s in systems],
        *consents,
        "created_at",
        "updated_at",
    ]


def write_export(
    session: Session, *, workspace: Workspace, out: TextIO, batch_size: int = 5000
) -> Iterator[int]:
    """Write every contact as CSV (oldest first), yielding the running count after each batch."""
    columns = export_columns(session, workspace)
    writer = csv.writer(out)
    writer.writerow(columns)
    list_names = {
        lst.id: lst.name for lst, _ in repository.list_lists_with_counts(session, workspace)
    }
    after, written = 0, 0
    while True:
        contacts = session.scalars(
            select(Contact)
            .where(Contact.workspace_id == workspace.id, Contact.id > after)
            .order_by(Contact.id)
            .limit(batch_size)
        ).all()
        if not contacts:
            return
        ids = [c.id for c in contacts]
        tags, lists = repository.tag_names_of(session, ids), repository.list_ids_of(session, ids)
        external, consents = (
            repository.external_ids_of(session, ids),
            repository.consents_of(session, ids),
        )
        for contact in contacts:
            writer.writerow(
                _export_row(contact, columns, tags, lists, list_names, external, consents)
            )
        written += len(contacts)
        after = contacts[-1].id
        yield written


def _export_row(
    contact: Contact,
    columns: list[str],
    tags: dict[int, list[str]],
    lists: dict[int, list[int]],
    list_names: dict[int, str],
    external: dict[int, dict[str, str]],
    consents: dict[int, list[Consent]],
) -> list[str]:
    given = {(c.channel, c.purpose): c.status for c in consents.get(contact.id, [])}
    cells: list[str] = []
    for column in columns:
        kind, _, rest = column.partition(".")
        if column in ("id", *STANDARD_FIELDS):
            value = getattr(contact, column)
            cells.append(
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
        elif column == "tags":
            cells.append(";".join(tags.get(contact.id, [])))
        elif column == "lists":
            cells.append(";".join(list_names[i] for i in lists.get(contact.id, [])))
        elif kind == "custom_fields":
            value = contact.custom_fields.get(rest)
            cells.append(
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
        elif kind == "external_ids":
            cells.append(external.get(contact.id, {}).get(rest, ""))
        elif kind == "consent":
            channel, _, purpose = rest.partition(".")
            status = given.get((channel, purpose))
            cells.append("" if status is None else "yes" if status == "opted_in" else "no")
        else:
            cells.append(getattr(contact, column).isoformat())
    return [guarded_cell(cell) for cell in cells]
