"""Running a CRM connector (X2): contacts both ways and the chat history as notes, in real
time (every worker pass pushes what changed here) and in batches (pulls every 15 minutes, and
a full pull in the 01:00–05:00 window once a night), with failures retried every five minutes
three times and then logged and skipped (X3).

The network calls happen with no database transaction open: each connector's turn reads what
to send in one short transaction, talks to the CRM, and records the outcome in another.
Pulled contacts go through the same path as any incoming batch (``service.sync_batch``):
the mapping, the per-field judgement, the review queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.contacts import service as contacts
from tidings.crm_sync import service
from tidings.crm_sync.domain import FieldRule, Normalise, parse_timestamp, to_millisecond
from tidings.crm_sync.hubspot import CrmClient, CrmError
from tidings.crm_sync.orm import Connector, MappingFailure, SyncBatch, SyncedRecord
from tidings.db.session import Database
from tidings.kernel.clock import Clock
from tidings.kernel.errors import invalid
from tidings.kernel.sealing import SecretBox
from tidings.messaging import service as messaging
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)

PULL_EVERY = timedelta(minutes=15)  # X2's batch mode, by default
OFF_PEAK = (1, 5)  # 01:00–05:00 local: the nightly full pull
RETRY_EVERY = timedelta(minutes=5)  # X3
RETRIES = 3
PUSH_LIMIT = 500


def set_token(
    session: Session, connector: Connector, *, token: str, box: SecretBox, now: datetime
) -> None:
    """The CRM's access token (a HubSpot private-app token), sealed; switching it on starts
    the sync from now for pushes and from the beginning for the first pull."""
    token = token.strip()
    if not 20 <= len(token) <= 500:
        raise invalid("invalid_token", "the access token your CRM gave you", field="token")
    settings = dict(connector.settings or {})
    settings["sealed_token"] = box.seal(token)
    settings.setdefault("pull_since_ms", 0)
    settings.setdefault("next_pull_at", now.isoformat())
    connector.settings, connector.updated_at = settings, now
    session.flush()


def request_pull(session: Session, connector: Connector, *, now: datetime) -> None:
    """Pull at the next worker pass instead of waiting for the schedule."""
    connector.settings = {**(connector.settings or {}), "next_pull_at": now.isoformat()}
    session.flush()


@dataclass
class ConnectorRunner:
    """Pass source of the worker: each connector with a token, in turn."""

    box: SecretBox
    clients: Callable[[str, str], CrmClient]  # (kind, token) → client
    name: str = "crm_sync.connectors"
    _cache: dict[tuple[str, str], CrmClient] = field(default_factory=dict, init=False, repr=False)

    def client(self, kind: str, token: str) -> CrmClient:
        key = (kind, token)
        if key not in self._cache:
            self._cache[key] = self.clients(kind, token)
        return self._cache[key]

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        with db.reading() as session:
            found = [
                (c.id, c.workspace_id, c.kind, self.box.open(c.settings["sealed_token"]))
                for c in session.scalars(select(Connector).where(Connector.kind == "hubspot"))
                if (c.settings or {}).get("sealed_token")
            ]
        handled = 0
        for connector_id, workspace_id, kind, token in found:
            client = self.client(kind, token)
            handled += run_connector(db, clock, connector_id, workspace_id, client)
        return handled


def run_connector(
    db: Database, clock: Clock, connector_id: int, workspace_id: int, client: CrmClient
) -> int:
    """One turn of one connector: push what changed here, push new chat lines, pull when due.
    Returns how many records moved."""
    moved = 0
    for step in (_push_contacts, _push_notes, _pull_contacts, _pull_notes):
        try:
            moved += step(db, clock, connector_id, workspace_id, client)
        except CrmError as error:
            _failed(db, clock, connector_id, step.__name__.strip("_"), error)
    return moved


def _state(db: Database, connector_id: int) -> dict[str, Any]:
    with db.reading() as session:
        connector = session.get(Connector, connector_id)
        return dict(connector.settings or {}) if connector else {}


def _loaded(
    session: Session, connector_id: int, workspace_id: int
) -> tuple[Connector, Workspace] | None:
    """The connector and its workspace, or None when either is gone."""
    connector = session.get(Connector, connector_id)
    workspace = workspaces.get_workspace(session, workspace_id)
    if connector is None or workspace is None:
        return None
    return connector, workspace


def _update(db: Database, connector_id: int, changes: dict[str, Any]) -> None:
    with db.transaction(background=True) as session:
        connector = session.get(Connector, connector_id)
        if connector is not None:
            connector.settings = {**(connector.settings or {}), **changes}


def _waiting(settings: dict[str, Any], step: str, now: datetime) -> bool:
    retry_at = settings.get(f"{step}_retry_at")
    return isinstance(retry_at, str) and datetime.fromisoformat(retry_at) > now


def _failed(db: Database, clock: Clock, connector_id: int, step: str, error: CrmError) -> None:
    """Transient: try again in five minutes, three times; then (or at once for a permanent
    error) log it and move past what failed, so one bad record cannot stop the sync."""
    now = clock.now()
    settings = _state(db, connector_id)
    attempts = int(settings.get(f"{step}_failures", 0)) + 1
    if error.transient and attempts <= RETRIES:
        _update(
            db,
            connector_id,
            {
                f"{step}_failures": attempts,
                f"{step}_retry_at": (now + RETRY_EVERY).isoformat(),
                f"{step}_error": str(error)[:500],
            },
        )
        return
    with db.transaction(background=True) as session:
        connector = session.get(Connector, connector_id)
        if connector is None:
            return
        session.add(
            MappingFailure(
                workspace_id=connector.workspace_id,
                connector_id=connector.id,
                object_type=step,
                external_id=None,
                position=0,
                field=None,
                reason=f"given up after {attempts} attempts: {error}"[:1000]
                if error.transient
                else str(error)[:1000],
                created_at=now,
            )
        )
        pending = dict(connector.settings or {}).get(f"{step}_pending")
        changes: dict[str, Any] = {
            f"{step}_failures": 0,
            f"{step}_retry_at": None,
            f"{step}_error": str(error)[:500],
        }
        if pending is not None:  # skip past what could not be sent
            changes[f"{step}_cursor"] = pending
        connector.settings = {**(connector.settings or {}), **changes}


def _record_batch(
    session: Session, connector: Connector, kind: str, count: int, started: float, now: datetime
) -> None:
    session.add(
        SyncBatch(
            workspace_id=connector.workspace_id,
            connector_id=connector.id,
            object_type=kind,
            received=count,
            created=0,
            updated=count,
            unchanged=0,
            stale=0,
            rejected=0,
            with_errors=0,
            conflicts=0,
            duration_ms=int((time.perf_counter() - started) * 1000),
            created_at=now,
        )
    )


# --- contacts out -------------------------------------------------------------------------------


def outgoing_properties(rules: list[FieldRule], values: dict[str, Any]) -> dict[str, str]:
    """Our values as the CRM's properties: the mapping read backwards. A value mapped through
    ``values`` goes back through the same table; SKUs and tags stay here."""
    properties: dict[str, str] = {}
    for rule in rules:
        if rule.target == "tags" or rule.normalise is Normalise.SKU:
            continue
        value = values.get(rule.target)
        if value is None:
            continue
        if rule.normalise is Normalise.MAP and rule.values:
            back = {str(v): k for k, v in rule.values.items()}
            value = back.get(str(value), value)
        properties[rule.source] = str(value)
    return properties


def _push_contacts(
    db: Database, clock: Clock, connector_id: int, workspace_id: int, client: CrmClient
) -> int:
    now = clock.now()
    settings = _state(db, connector_id)
    if _waiting(settings, "push_contacts", now):
        return 0
    started = time.perf_counter()
    with db.reading() as session:
        loaded = _loaded(session, connector_id, workspace_id)
        if loaded is None:
            return 0
        connector, workspace = loaded
        cursor = settings.get("push_contacts_cursor")
        if cursor is None:  # a new connector pushes what changes from now on
            _update(db, connector_id, {"push_contacts_cursor": contacts.latest_event_id(session)})
            return 0
        rows = contacts.settled_events_after(
            session, position=int(cursor), now=now, limit=PUSH_LIMIT
        )
        changed = sorted({int(r.contact_id) for r in _to_push(rows, connector)})
        last = int(rows[-1].id) if rows else int(cursor)
        rules = service.rules_of(connector)
        targets = [r.target for r in rules]
        held = contacts.hold_contacts(session, workspace, changed)
        values = {
            c.id: contacts.current_values(c, [t for t in targets if t != "tags"]) for c in held
        }
        known = {
            view.contact.id: view.external_ids.get(connector.name)
            for view in contacts.describe_contacts(session, held)
        }
        emails = {c.id: c.email for c in held}
        name = connector.name
    updates, upserts, unmatched = [], [], []
    for contact_id in changed:
        if contact_id not in values:
            continue
        properties = outgoing_properties(rules, values[contact_id])
        if emails.get(contact_id):
            properties.setdefault("email", str(emails[contact_id]))
        if known.get(contact_id):
            updates.append((contact_id, {"id": known[contact_id], "properties": properties}))
        elif emails.get(contact_id):
            upserts.append(
                (
                    contact_id,
                    {"idProperty": "email", "id": emails[contact_id], "properties": properties},
                )
            )
        else:
            unmatched.append(contact_id)
    if not (updates or upserts or unmatched):
        if last != int(cursor):
            _update(db, connector_id, {"push_contacts_cursor": last})
        return 0
    _update(db, connector_id, {"push_contacts_pending": last})
    done = client.update_contacts([i for _, i in updates]) if updates else []
    done += client.upsert_contacts([i for _, i in upserts]) if upserts else []
    by_email = {str(r.properties.get("email", "")).casefold(): r for r in done}
    by_id = {r.id: r for r in done}
    with db.transaction(background=True) as session:
        loaded = _loaded(session, connector_id, workspace_id)
        assert loaded is not None  # read moments ago in this pass
        connector, workspace = loaded
        for contact_id, sent in [*updates, *upserts]:
            remote = by_id.get(str(sent.get("id"))) or by_email.get(
                str(emails.get(contact_id) or "").casefold()
            )
            if remote is None:
                continue
            contact = contacts.get_contact_or_404(session, workspace, contact_id)
            contacts.set_external_id(
                session, workspace=workspace, contact=contact, system=name, external_id=remote.id
            )
            _remember_pushed(
                session,
                connector,
                remote.id,
                contact_id,
                values[contact_id],
                remote.updated_at,
                now,
            )
        for contact_id in unmatched:
            session.add(
                MappingFailure(
                    workspace_id=workspace_id,
                    connector_id=connector_id,
                    object_type="push_contacts",
                    external_id=None,
                    position=0,
                    field="email",
                    reason=f"contact {contact_id} has no e-mail and no {name} id: "
                    "the CRM cannot match it",
                    created_at=now,
                )
            )
        _record_batch(session, connector, "contact.push", len(done), started, now)
        connector.settings = {
            **(connector.settings or {}),
            "push_contacts_cursor": last,
            "push_contacts_pending": None,
            "push_contacts_failures": 0,
            "push_contacts_retry_at": None,
            "last_push_at": now.isoformat(),
        }
    return len(done)


def _to_push(rows: Sequence[Any], connector: Connector) -> list[Any]:
    """The timeline rows that mean a contact changed here, for this connector to send; what
    the sync itself wrote came from there and is not sent back."""
    source = f"sync:{connector.name}"
    return [
        r
        for r in rows
        if r.workspace_id == connector.workspace_id
        and r.event_type in ("contact.created", "contact.updated", "contact.merged")
        and r.source != source
    ]


def _remember_pushed(
    session: Session,
    connector: Connector,
    external_id: str,
    contact_id: int,
    values: dict[str, Any],
    remote_at: str,
    now: datetime,
) -> None:
    """What was just sent is what both sides agree on: the base of the next judgement."""
    try:
        at = to_millisecond(datetime.fromisoformat(remote_at.replace("Z", "+00:00")))
    except ValueError:
        at = now
    service.keep_record(
        session,
        connector,
        "contact",
        external_id,
        record=service.synced_record(session, connector.id, "contact", external_id),
        at=at,
        values={k: v for k, v in values.items() if k != "tags"},
        contact_id=contact_id,
        now=now,
    )


# --- chat history out ---------------------------------------------------------------------------


def _push_notes(
    db: Database, clock: Clock, connector_id: int, workspace_id: int, client: CrmClient
) -> int:
    now = clock.now()
    settings = _state(db, connector_id)
    if _waiting(settings, "push_notes", now):
        return 0
    started = time.perf_counter()
    with db.reading() as session:
        loaded = _loaded(session, connector_id, workspace_id)
        if loaded is None:
            return 0
        connector, workspace = loaded
        cursor = settings.get("push_notes_cursor")
        if cursor is None:
            _update(
                db,
                connector_id,
                {"push_notes_cursor": messaging.latest_message_id(session, workspace)},
            )
            return 0
        linked = {
            ours: theirs for theirs, ours in service.linked_contacts(session, connector_id).items()
        }
        lines = messaging.chat_lines_after(
            session, workspace, after_id=int(cursor), contact_ids=sorted(linked), limit=PUSH_LIMIT
        )
    if not lines:
        return 0
    notes = [
        {
            "contact_id": linked[line.contact_id],
            "at": line.at,
            "body": ("Customer on WhatsApp: " if line.direction == "in" else "Sent on WhatsApp: ")
            + (line.text or f"[{line.kind}]"),
        }
        for line in lines
    ]
    _update(db, connector_id, {"push_notes_pending": lines[-1].id})
    created = client.create_notes(notes)
    with db.transaction(background=True) as session:
        loaded = _loaded(session, connector_id, workspace_id)
        assert loaded is not None  # read moments ago in this pass
        connector, _ = loaded
        for note_id, line in zip(created, lines, strict=False):
            # Kept so that pulling notes back does not bring our own in twice.
            service.keep_record(
                session,
                connector,
                "note",
                note_id,
                record=None,
                at=now,
                values={"message_id": line.id},
                contact_id=line.contact_id,
                now=now,
            )
        _record_batch(session, connector, "note.push", len(notes), started, now)
        connector.settings = {
            **(connector.settings or {}),
            "push_notes_cursor": lines[-1].id,
            "push_notes_pending": None,
            "push_notes_failures": 0,
            "push_notes_retry_at": None,
        }
    return len(notes)


# --- contacts in --------------------------------------------------------------------------------


def pull_due(settings: dict[str, Any], now: datetime, timezone: str) -> tuple[bool, bool]:
    """(pull now?, from the beginning?): every 15 minutes, and once a night in the off-peak
    window the whole CRM again, which catches anything a cursor may have missed."""
    local = now.astimezone(ZoneInfo(timezone))
    night = (
        OFF_PEAK[0] <= local.hour < OFF_PEAK[1]
        and settings.get("last_full_pull_day") != local.date().isoformat()
    )
    next_at = settings.get("next_pull_at")
    due = night or next_at is None or datetime.fromisoformat(next_at) <= now
    return due, night


def _pull_contacts(
    db: Database, clock: Clock, connector_id: int, workspace_id: int, client: CrmClient
) -> int:
    now = clock.now()
    settings = _state(db, connector_id)
    if _waiting(settings, "pull_contacts", now):
        return 0
    with db.reading() as session:
        loaded = _loaded(session, connector_id, workspace_id)
        if loaded is None:
            return 0
        connector, workspace = loaded
        due, full = pull_due(settings, now, workspace.timezone)
        if not due:
            return 0
        rules = service.rules_of(connector)
    since = 0 if full else int(settings.get("pull_since_ms") or 0)
    remote = client.changed_contacts(since, [r.source for r in rules])
    records = [
        {
            "external_id": r.id,
            "updated_at": r.properties.get("lastmodifieddate") or r.updated_at,
            "fields": r.properties,
        }
        for r in remote
    ]
    newest = since
    with db.transaction(background=True) as session:
        loaded = _loaded(session, connector_id, workspace_id)
        assert loaded is not None  # read moments ago in this pass
        connector, workspace = loaded
        for start in range(0, len(records), service.BATCH_MAX):
            service.sync_batch(
                session,
                workspace=workspace,
                connector=connector,
                object_type="contact",
                records=records[start : start + service.BATCH_MAX],
                now=now,
            )
        for record in records:
            try:
                newest = max(
                    newest,
                    int(to_millisecond(parse_timestamp(record["updated_at"])).timestamp() * 1000),
                )
            except ValueError:
                continue
        local_day = now.astimezone(ZoneInfo(workspace.timezone)).date().isoformat()
        connector.settings = {
            **(connector.settings or {}),
            "pull_since_ms": newest,
            "next_pull_at": (now + PULL_EVERY).isoformat(),
            "last_pull_at": now.isoformat(),
            "pull_contacts_failures": 0,
            "pull_contacts_retry_at": None,
            **({"last_full_pull_day": local_day} if full else {}),
        }
    return len(records)


# --- notes in -----------------------------------------------------------------------------------

NOTE_EVENT = "crm.note"


def _pull_notes(
    db: Database, clock: Clock, connector_id: int, workspace_id: int, client: CrmClient
) -> int:
    """The CRM's own notes on linked contacts, onto their timeline as ``crm.note`` (the chat
    history's other direction), when the contacts are pulled; ours are not brought back."""
    now = clock.now()
    settings = _state(db, connector_id)
    if _waiting(settings, "pull_notes", now):
        return 0
    if settings.get("last_pull_at") == settings.get("last_notes_pull_at"):
        return 0  # pulled together with the contacts
    since = int(settings.get("pull_notes_since_ms") or 0)
    notes = client.changed_notes(since)
    with db.reading() as session:
        ours = set(
            session.scalars(
                select(SyncedRecord.external_id).where(
                    SyncedRecord.connector_id == connector_id,
                    SyncedRecord.object_type == "note",
                )
            )
        )
        linked = service.linked_contacts(session, connector_id)
    theirs = [n for n in notes if n.id not in ours]
    owners = client.note_contacts([n.id for n in theirs]) if theirs else {}
    taken = 0
    newest = since
    with db.transaction(background=True) as session:
        loaded = _loaded(session, connector_id, workspace_id)
        assert loaded is not None  # read moments ago in this pass
        connector, workspace = loaded
        for note in theirs:
            body = str(note.properties.get("hs_note_body") or "")
            for remote_contact in owners.get(note.id, []):
                contact_id = linked.get(remote_contact)
                if contact_id is None:
                    continue
                contact = contacts.get_contact_or_404(session, workspace, contact_id)
                _, new = contacts.record_event(
                    session,
                    workspace=workspace,
                    contact=contact,
                    event_type=NOTE_EVENT,
                    occurred_at=min(_when(note.properties.get("hs_timestamp"), now), now),
                    properties={"note_id": note.id, "body": body[:5000], "crm": connector.name},
                    source=f"sync:{connector.name}",
                    idempotency_key=f"{connector.name}:note:{note.id}:{contact_id}",
                    now=now,
                )
                taken += int(new)
        for note in notes:
            moment = note.properties.get("hs_lastmodifieddate") or note.updated_at
            newest = max(newest, int(_when(moment, now).timestamp() * 1000))
        connector.settings = {
            **(connector.settings or {}),
            "pull_notes_since_ms": newest,
            "last_notes_pull_at": (connector.settings or {}).get("last_pull_at"),
            "pull_notes_failures": 0,
            "pull_notes_retry_at": None,
        }
    return taken


def _when(value: Any, fallback: datetime) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError:
        return fallback


# --- health -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """What waits to go out (O1): changes not yet pushed, and how long the oldest has waited."""

    contacts_waiting: int
    messages_waiting: int
    oldest_waiting_seconds: int | None
    last_push_at: str | None
    last_pull_at: str | None
    retrying: list[str]


def backlog(session: Session, connector: Connector, *, now: datetime) -> Backlog:
    settings = dict(connector.settings or {})
    cursor = settings.get("push_contacts_cursor")
    waiting = (
        _to_push(
            contacts.settled_events_after(session, position=int(cursor), now=now, limit=10_000),
            connector,
        )
        if cursor is not None
        else []
    )
    workspace = workspaces.get_workspace(session, connector.workspace_id)
    messages_waiting = 0
    if workspace is not None and settings.get("push_notes_cursor") is not None:
        linked = sorted(service.linked_contacts(session, connector.id).values())
        messages_waiting = len(
            messaging.chat_lines_after(
                session,
                workspace,
                after_id=int(settings["push_notes_cursor"]),
                contact_ids=linked,
                limit=10_000,
            )
        )
    oldest = min((r.received_at for r in waiting), default=None)
    return Backlog(
        contacts_waiting=len({r.contact_id for r in waiting}),
        messages_waiting=messages_waiting,
        oldest_waiting_seconds=int((now - oldest).total_seconds()) if oldest else None,
        last_push_at=settings.get("last_push_at"),
        last_pull_at=settings.get("last_pull_at"),
        retrying=sorted(
            key.removesuffix("_retry_at")
            for key, value in settings.items()
            if key.endswith("_retry_at") and value
        ),
    )
