"""Merging two contacts into one, and undoing it (C3).

A merge keeps **everything** of both: every row anywhere in the schema that points at the
merged contact is moved to the survivor. The tables are found from the foreign keys at run
time, so a table added later is covered without a change here. Where a moved row would
duplicate one the survivor has (the same tag, list, consent, conversation on the same
number …), the survivor's row stays, the rows pointing at the duplicate are re-pointed to it
(a conversation's messages, notes and labels), and the duplicate is removed — kept in the
journal. Consent keeps the stricter answer: an opt-out on either side stays an opt-out.

Everything done is written to a journal in the audit entry (``contact_merges``), and undoing
replays it backwards: the merged contact comes back (under a new id: SQLite may have given
its old id to someone else) with everything that was its own.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Table, and_, delete, insert, select, update
from sqlalchemy.orm import Session

from tidings.contacts.domain import ConsentStatus
from tidings.contacts.duplicates import Candidate, Findings, Person, find_candidates
from tidings.contacts.orm import Contact, ContactAlias, ContactEvent, ContactMerge, ExternalId
from tidings.contacts.service.records import get_contact_or_404
from tidings.contacts.service.timeline import log_event
from tidings.db.base import Base, among
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.workspaces.orm import Workspace

# The survivor's empty fields are filled from the merged contact; its own values stay.
FILLED = (
    "name",
    "first_name",
    "last_name",
    "phone",
    "email",
    "locale",
    "timezone",
    "country",
    "lead_source",
)


@cache
def _references(target: str) -> tuple[tuple[Table, str], ...]:
    """Every (table, column) that points at ``target``'s id: by a foreign key, or by the name
    ``<singular>_id`` where a busy table keeps no foreign key (step runs' ``contact_id``)."""
    named = f"{target.removesuffix('s')}_id"
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name == target:
            continue
        for column in table.columns:
            if _points_at(table, column.name, target) or (
                column.name == named and not column.foreign_keys
            ):
                found.append((table, column.name))
    return tuple(found)


def _points_at(table: Table, column: str, target: str) -> bool:
    return any(fk.column.table.name == target for fk in table.c[column].foreign_keys)


def _uniques(table: Table, column: str) -> list[list[str]]:
    """The column sets that must stay unique and include ``column``."""
    sets: list[list[str]] = []
    for constraint in table.constraints:
        names = [c.name for c in getattr(constraint, "columns", [])]
        kind = type(constraint).__name__
        if kind in {"UniqueConstraint", "PrimaryKeyConstraint"} and column in names:
            sets.append(names)
    for index in table.indexes:
        names = [c.name for c in index.columns]
        if index.unique and column in names:
            sets.append(names)
    return sets


def _key(table: Table, row: Any) -> dict[str, Any]:
    return {c.name: row._mapping[c.name] for c in table.primary_key.columns}


def _where(table: Table, key: dict[str, Any]) -> Any:
    return and_(*(table.c[name] == value for name, value in key.items()))


def _dump(table: Table, row: Any) -> dict[str, Any]:
    """A row as JSON: times as ISO text under a marker, everything else as it is."""
    dumped: dict[str, Any] = {}
    for column in table.columns:
        value = row._mapping[column.name]
        dumped[column.name] = {"$time": value.isoformat()} if isinstance(value, datetime) else value
    return dumped


def _load(dumped: dict[str, Any]) -> dict[str, Any]:
    return {
        name: datetime.fromisoformat(value["$time"])
        if isinstance(value, dict) and "$time" in value
        else value
        for name, value in dumped.items()
    }


class _Journal:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def moved(self, table: Table, column: str, old: int, keys: list[dict[str, Any]]) -> None:
        if keys:
            self.steps.append(
                {"do": "moved", "table": table.name, "column": column, "from": old, "keys": keys}
            )

    def removed(self, table: Table, row: Any) -> None:
        self.steps.append({"do": "removed", "table": table.name, "row": _dump(table, row)})

    def replaced(self, table: Table, row: Any) -> None:
        self.steps.append({"do": "replaced", "table": table.name, "row": _dump(table, row)})

    def added(self, table: Table, key: dict[str, Any]) -> None:
        self.steps.append({"do": "added", "table": table.name, "key": key})


def _move(
    session: Session, table: Table, column: str, old: int, new: int, journal: _Journal
) -> None:
    """Point every row of ``table`` whose ``column`` is ``old`` at ``new``."""
    uniques = _uniques(table, column)
    if not uniques and len(table.primary_key.columns) == 1:
        (pk,) = table.primary_key.columns
        ids = list(session.scalars(select(pk).where(table.c[column] == old)))
        if ids:
            session.execute(update(table).where(table.c[column] == old).values({column: new}))
            journal.moved(table, column, old, [{pk.name: i} for i in ids])
        return
    moved: list[dict[str, Any]] = []
    for row in session.execute(select(table).where(table.c[column] == old)).all():
        twin = None
        for names in uniques:
            wanted = {n: (new if n == column else row._mapping[n]) for n in names}
            twin = session.execute(select(table).where(_where(table, wanted))).first()
            if twin is not None:
                break
        key = _key(table, row)
        if twin is None:
            session.execute(update(table).where(_where(table, key)).values({column: new}))
            moved.append({**key, column: new} if column in key else key)
            continue
        _keep_stricter(session, table, row, twin, journal)
        twin_key = _key(table, twin)
        if len(key) == 1:  # rows elsewhere may point at the duplicate: point them at its twin
            (name,) = key
            for child, child_column in _references(table.name):
                _move(session, child, child_column, key[name], twin_key[name], journal)
        journal.removed(table, row)
        session.execute(delete(table).where(_where(table, key)))
    journal.moved(table, column, old, moved)


def _keep_stricter(session: Session, table: Table, row: Any, twin: Any, journal: _Journal) -> None:
    """Two consents for one channel and purpose: an opt-out on either side wins (never send
    to someone who said stop); otherwise the survivor's answer stays."""
    if table.name != "consents":
        return
    opted_out = ConsentStatus.OPTED_OUT.value
    if row._mapping["status"] == opted_out and twin._mapping["status"] != opted_out:
        journal.replaced(table, twin)
        changes = {c: row._mapping[c] for c in ("status", "source", "recorded_at")}
        session.execute(update(table).where(_where(table, _key(table, twin))).values(changes))


def merge_contacts(
    session: Session,
    *,
    workspace: Workspace,
    survivor_id: int,
    merged_id: int,
    reasons: list[str],
    by: str,
    now: datetime,
) -> ContactMerge:
    """Merge ``merged_id`` into ``survivor_id``; returns the audit entry.

    Raises:
        TidingsError: 404 for an unknown contact, 422 for a contact merged into itself.
    """
    if survivor_id == merged_id:
        raise invalid("same_contact", "a contact cannot be merged into itself", field="merged_id")
    survivor = get_contact_or_404(session, workspace, survivor_id)
    merged = get_contact_or_404(session, workspace, merged_id)
    session.flush()
    contacts_table = Contact.__table__
    assert isinstance(contacts_table, Table)
    snapshot = _dump(
        contacts_table,
        session.execute(select(contacts_table).where(contacts_table.c.id == merged.id)).one(),
    )
    journal = _Journal()
    before = {
        name: getattr(survivor, name) for name in (*FILLED, "custom_fields", "do_not_contact")
    }
    filled = {
        name: getattr(merged, name)
        for name in FILLED
        if getattr(survivor, name) in (None, "") and getattr(merged, name) not in (None, "")
    }
    custom = {**merged.custom_fields, **survivor.custom_fields}
    do_not_contact = survivor.do_not_contact or merged.do_not_contact
    kept = _identities_to_keep(session, survivor, merged)
    # The merged contact lets go of its phone and e-mail first: they are unique.
    merged.phone, merged.email = None, None
    session.flush()
    # Every identity of the merged contact stays the survivor's: what it had its own of
    # (a second phone, e-mail, WhatsApp id) becomes an alias, so the customer writing from it
    # reaches this contact — with its consents — instead of starting a new one.
    aliases = ContactAlias.__table__
    assert isinstance(aliases, Table)
    for kind, value in kept:
        alias_id = session.execute(
            insert(aliases)
            .values(
                workspace_id=workspace.id,
                contact_id=survivor.id,
                kind=kind,
                value=value,
                created_at=now,
            )
            .returning(aliases.c.id)
        ).scalar_one()
        journal.added(aliases, {"id": alias_id})
    for table, column in _references("contacts"):
        _move(session, table, column, merged.id, survivor.id, journal)
    for name, value in filled.items():
        setattr(survivor, name, value)
    survivor.custom_fields, survivor.do_not_contact = custom, do_not_contact
    survivor.updated_at = now
    session.flush()
    session.expunge(merged)
    session.execute(delete(contacts_table).where(contacts_table.c.id == merged_id))
    entry = ContactMerge(
        workspace_id=workspace.id,
        survivor_id=survivor.id,
        merged_id=merged_id,
        reasons={"reasons": reasons},
        journal={
            "contact": snapshot,
            "survivor_before": before,
            "steps": journal.steps,
        },
        merged_by=by,
        merged_at=now,
    )
    session.add(entry)
    session.flush()
    log_event(
        session,
        workspace,
        survivor.id,
        "contact.merged",
        now,
        {"merged_contact_id": merged_id, "merge_id": entry.id, "reasons": reasons},
        "merge",
    )
    return entry


def _identities_to_keep(
    session: Session, survivor: Contact, merged: Contact
) -> list[tuple[str, str]]:
    """The merged contact's phone, e-mail and external ids the survivor has a different one
    of (those it has none of are filled in or moved as they are)."""
    kept: list[tuple[str, str]] = []
    for kind in ("phone", "email"):
        mine, theirs = getattr(survivor, kind), getattr(merged, kind)
        if mine and theirs and mine != theirs:
            kept.append((kind, theirs))
    survivors_own = select(ExternalId.system, ExternalId.external_id).where(
        ExternalId.contact_id == survivor.id
    )
    own: dict[str, str] = {system: value for system, value in session.execute(survivors_own)}  # noqa: C416
    for system, value in session.execute(
        select(ExternalId.system, ExternalId.external_id).where(ExternalId.contact_id == merged.id)
    ):
        if system in own and own[system] != value:
            kept.append((f"external:{system}", value))
    return kept


def get_merge_or_404(session: Session, workspace: Workspace, merge_id: int) -> ContactMerge:
    found = session.get(ContactMerge, merge_id)
    if found is None or found.workspace_id != workspace.id:
        raise not_found("merge")
    return found


def list_merges(
    session: Session, workspace: Workspace, *, contact_id: int | None, limit: int
) -> list[ContactMerge]:
    query = select(ContactMerge).where(ContactMerge.workspace_id == workspace.id)
    if contact_id is not None:
        query = query.where(ContactMerge.survivor_id == contact_id)
    return list(session.scalars(query.order_by(ContactMerge.id.desc()).limit(limit)))


def undo_merge(
    session: Session, *, workspace: Workspace, merge_id: int, now: datetime
) -> ContactMerge:
    """Split a merge: the merged contact comes back (with a new id) with every row that was
    its own, and the survivor gets back the fields that were filled from it.

    Raises:
        TidingsError: 404 unknown, 409 undone already or the survivor was merged since.
    """
    entry = get_merge_or_404(session, workspace, merge_id)
    if entry.undone_at is not None:
        raise conflict("already_undone", "this merge was undone already")
    later = session.scalar(
        select(ContactMerge.id).where(
            ContactMerge.survivor_id == entry.survivor_id,
            ContactMerge.id > entry.id,
            ContactMerge.undone_at.is_(None),
        )
    )
    if later is not None:
        raise conflict("merged_since", f"undo the later merge {later} of this contact first")
    tables = Base.metadata.tables
    contacts_table = tables["contacts"]
    journal = entry.journal
    restored = _load(journal["contact"])
    old_id = restored.pop("id")
    phone, email = restored.pop("phone"), restored.pop("email")
    new_id = session.execute(
        insert(contacts_table).values(restored).returning(contacts_table.c.id)
    ).scalar_one()
    survivor = get_contact_or_404(session, workspace, entry.survivor_id)
    for name, value in journal["survivor_before"].items():
        setattr(survivor, name, value)
    survivor.updated_at = now
    session.flush()
    session.execute(
        update(contacts_table).where(contacts_table.c.id == new_id).values(phone=phone, email=email)
    )

    contact_columns = {(t.name, c) for t, c in _references("contacts")}

    def back(table: Table, column: str, value: Any) -> Any:
        """The merged contact's old id becomes its new one; other ids stay."""
        return new_id if (table.name, column) in contact_columns and value == old_id else value

    for step in reversed(journal["steps"]):
        table = tables[step["table"]]
        if step["do"] == "added":
            session.execute(delete(table).where(_where(table, step["key"])))
        elif step["do"] == "removed":
            row = {k: back(table, k, v) for k, v in _load(step["row"]).items()}
            session.execute(insert(table).values(row))
        elif step["do"] == "replaced":
            row = _load(step["row"])
            key = {c.name: row[c.name] for c in table.primary_key.columns}
            session.execute(update(table).where(_where(table, key)).values(row))
        else:
            column = step["column"]
            _move_back(session, table, column, back(table, column, step["from"]), step["keys"])
    entry.undone_at, entry.restored_id = now, new_id
    session.flush()
    for contact_id in (entry.survivor_id, new_id):
        log_event(
            session,
            workspace,
            contact_id,
            "contact.unmerged",
            now,
            {"merge_id": entry.id, "survivor_id": entry.survivor_id, "restored_id": new_id},
            "merge",
        )
    return entry


def _move_back(
    session: Session, table: Table, column: str, target: Any, keys: list[dict[str, Any]]
) -> None:
    primary = [c.name for c in table.primary_key.columns]
    if len(primary) == 1 and primary[0] != column:  # by id, many at once
        (name,) = primary
        ids = [key[name] for key in keys]
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            session.execute(
                update(table).where(among(session, table.c[name], chunk)).values({column: target})
            )
        return
    for key in keys:  # composite keys (a tag, a list): few rows
        session.execute(update(table).where(_where(table, key)).values({column: target}))


# --- suggestions --------------------------------------------------------------------------------

EVIDENCE_WINDOW = timedelta(days=90)


def duplicate_candidates(
    session: Session, workspace: Workspace, *, now: datetime, limit: int
) -> tuple[list[Candidate], Findings]:
    """Pairs of this workspace's contacts that are probably one person, best first."""
    people = [
        Person(
            row.id, row.name or " ".join(filter(None, (row.first_name, row.last_name))), row.email
        )
        for row in session.execute(
            select(
                Contact.id, Contact.name, Contact.first_name, Contact.last_name, Contact.email
            ).where(Contact.workspace_id == workspace.id)
        )
    ]
    purchases = bought_since(session, workspace, now - EVIDENCE_WINDOW)
    findings = find_candidates(people, purchases)
    return findings.candidates[:limit], findings


def bought_since(session: Session, workspace: Workspace, since: datetime) -> dict[int, set[str]]:
    """Each contact's SKUs from order events since ``since`` (``sku``, ``skus`` or ``items``)."""
    bought: dict[int, set[str]] = {}
    rows = session.execute(
        select(ContactEvent.contact_id, ContactEvent.properties).where(
            ContactEvent.workspace_id == workspace.id,
            ContactEvent.event_type.startswith("order."),
            ContactEvent.event_type != "order.intent",
            ContactEvent.occurred_at >= since,
        )
    )
    for contact_id, properties in rows:
        skus = set(_skus(properties or {}))
        if skus:
            bought.setdefault(contact_id, set()).update(skus)
    return bought


def _skus(properties: dict[str, Any]) -> list[str]:
    found = [str(s) for s in properties.get("skus") or [] if s]
    if properties.get("sku"):
        found.append(str(properties["sku"]))
    for item in properties.get("items") or []:
        if isinstance(item, dict) and item.get("sku"):
            found.append(str(item["sku"]))
    return found
