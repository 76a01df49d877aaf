"""CRM sync's use cases: connectors and their mapping, incoming batches of contacts, orders
and custom objects judged per field (C4, C5), the review queue, the mapping error log and
the figures behind sync health.

Runs inside the caller's transaction and never commits. Each record of a batch is taken in
its own savepoint: a record that cannot be taken is reported with its place in the batch and
the reason, and leaves nothing half-written; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tidings.automation import service as automation
from tidings.conditions.domain import error_path
from tidings.contacts import service as contacts
from tidings.contacts.domain import STANDARD_FIELDS
from tidings.crm_sync.domain import (
    CUSTOM_PREFIX,
    NAME,
    Difference,
    FieldMapping,
    FieldRule,
    MappingError,
    Winner,
    judge_fields,
    map_fields,
    parse_timestamp,
    to_millisecond,
)
from tidings.crm_sync.orm import (
    Connector,
    MappingFailure,
    SyncBatch,
    SyncConflict,
    SyncedRecord,
)
from tidings.kernel.errors import TidingsError, conflict, invalid, not_found
from tidings.workspaces.orm import Workspace

KINDS = frozenset({"custom", "hubspot"})
BATCH_MAX = 1000
ORDER_STATUSES = frozenset({"placed", "paid", "shipped", "delivered", "cancelled"})

# --- connectors ---------------------------------------------------------------------------------


def list_connectors(session: Session, workspace: Workspace) -> Sequence[Connector]:
    return session.scalars(
        select(Connector).where(Connector.workspace_id == workspace.id).order_by(Connector.name)
    ).all()


def get_connector_or_404(session: Session, workspace: Workspace, name: str) -> Connector:
    found = session.scalar(
        select(Connector).where(Connector.workspace_id == workspace.id, Connector.name == name)
    )
    if found is None:
        raise not_found("connector")
    return found


def parse_mapping(session: Session, workspace: Workspace, data: Any) -> FieldMapping:
    """Raises ``TidingsError`` (422) naming the field at fault (``mapping.contact[2].target``)."""
    try:
        mapping = FieldMapping.model_validate(data or {})
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid(
            "invalid_mapping", first["msg"], field=error_path(first["loc"], data, root="mapping")
        ) from None
    known = set(contacts.field_specs(session, workspace))
    for index, rule in enumerate(mapping.contact):
        key = rule.target.removeprefix(CUSTOM_PREFIX)
        if rule.target.startswith(CUSTOM_PREFIX) and key not in known:
            raise invalid(
                "unknown_field",
                f"no custom field {key!r}: define it first",
                field=f"mapping.contact[{index}].target",
            )
    return mapping


def save_connector(
    session: Session,
    *,
    workspace: Workspace,
    data: dict[str, Any],
    now: datetime,
    connector: Connector | None = None,
) -> Connector:
    """Create or change a connector.

    Raises:
        TidingsError: 422 naming the field, 409 for a name in use.
    """
    name = data.get("name", connector.name if connector else None)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise invalid(
            "invalid_name", "1-64 lower-case letters, digits, - and _ (e.g. hubspot)", field="name"
        )
    kind = data.get("kind", connector.kind if connector else "custom")
    if kind not in KINDS:
        raise invalid("invalid_kind", f"one of {', '.join(sorted(KINDS))}", field="kind")
    mapping = parse_mapping(
        session, workspace, data.get("mapping", connector and connector.mapping)
    )
    clash = session.scalar(
        select(Connector).where(Connector.workspace_id == workspace.id, Connector.name == name)
    )
    if clash is not None and clash is not connector:
        raise conflict("connector_exists", f"a connector named {name!r} exists", field="name")
    if connector is None:
        connector = Connector(workspace_id=workspace.id, created_at=now, settings={})
        session.add(connector)
    connector.name, connector.kind = name, kind
    connector.mapping = mapping.model_dump(mode="json")
    connector.updated_at = now
    session.flush()
    return connector


def delete_connector(session: Session, workspace: Workspace, name: str) -> None:
    session.delete(get_connector_or_404(session, workspace, name))
    session.flush()


def rules_of(connector: Connector) -> list[FieldRule]:
    return FieldMapping.model_validate(connector.mapping or {}).contact


# --- incoming batches ---------------------------------------------------------------------------


@dataclass
class RecordResult:
    position: int
    external_id: str | None
    outcome: str  # created | updated | unchanged | stale | rejected
    local_id: int | None = None
    conflicts: int = 0
    errors: list[dict[str, str | None]] = field(default_factory=list)


@dataclass
class BatchReport:
    object_type: str
    results: list[RecordResult]

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)


def synced_record(
    session: Session, connector_id: int, object_type: str, external_id: str
) -> SyncedRecord | None:
    return session.scalar(
        select(SyncedRecord).where(
            SyncedRecord.connector_id == connector_id,
            SyncedRecord.object_type == object_type,
            SyncedRecord.external_id == external_id,
        )
    )


def keep_record(
    session: Session,
    connector: Connector,
    object_type: str,
    external_id: str,
    *,
    record: SyncedRecord | None,
    at: datetime,
    values: dict[str, Any],
    contact_id: int | None,
    now: datetime,
) -> None:
    """The version both sides now agree on: the base of the next judgement."""
    if record is None:
        record = SyncedRecord(
            workspace_id=connector.workspace_id,
            connector_id=connector.id,
            object_type=object_type,
            external_id=external_id,
            created_at=now,
        )
        session.add(record)
    record.remote_updated_at, record.values = at, values
    record.contact_id, record.updated_at = contact_id, now


def linked_contacts(session: Session, connector_id: int) -> dict[str, int]:
    """The connector's contact ids mapped to ours."""
    return {
        r.external_id: r.contact_id
        for r in session.scalars(
            select(SyncedRecord).where(
                SyncedRecord.connector_id == connector_id,
                SyncedRecord.object_type == "contact",
                SyncedRecord.contact_id.is_not(None),
            )
        )
        if r.contact_id is not None
    }


class _RejectedError(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class _Batch:
    session: Session
    workspace: Workspace
    connector: Connector
    object_type: str
    now: datetime
    skus: dict[str, str | None] = field(default_factory=dict)

    def sku_for(self, name: str) -> str | None:
        if name not in self.skus:
            self.skus[name] = automation.sku_for(self.session, self.workspace, name)
        return self.skus[name]

    def synced(self, external_id: str) -> SyncedRecord | None:
        return synced_record(self.session, self.connector.id, self.object_type, external_id)

    def remember(
        self,
        record: SyncedRecord | None,
        external_id: str,
        *,
        at: datetime,
        values: dict[str, Any],
        contact_id: int | None,
    ) -> None:
        keep_record(
            self.session,
            self.connector,
            self.object_type,
            external_id,
            record=record,
            at=at,
            values=values,
            contact_id=contact_id,
            now=self.now,
        )

    def queue(
        self,
        external_id: str,
        contact_id: int | None,
        differences: Sequence[Any],
        *,
        ours_at: datetime,
        theirs_at: datetime,
    ) -> None:
        for difference in differences:
            self.session.add(
                SyncConflict(
                    workspace_id=self.workspace.id,
                    connector_id=self.connector.id,
                    object_type=self.object_type,
                    external_id=external_id,
                    contact_id=contact_id,
                    field=difference.field,
                    ours={"value": difference.ours},
                    theirs={"value": difference.theirs},
                    winner=difference.winner.value,
                    ours_at=ours_at,
                    theirs_at=theirs_at,
                    state="open",
                    created_at=self.now,
                )
            )


def _envelope(record: Any) -> tuple[str, datetime, dict[str, Any]]:
    if not isinstance(record, dict):
        raise _RejectedError(None, "each record is a JSON object")
    external_id = record.get("external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if not isinstance(external_id, str) or not 1 <= len(external_id.strip()) <= 200:
        raise _RejectedError("external_id", "the record's id in your system: 1-200 characters")
    try:
        at = parse_timestamp(record.get("updated_at"))
    except ValueError as error:
        raise _RejectedError("updated_at", str(error)) from None
    fields = record.get("fields", {})
    if not isinstance(fields, dict):
        raise _RejectedError("fields", "an object of your field names and values")
    return external_id.strip(), at, fields


def sync_batch(
    session: Session,
    *,
    workspace: Workspace,
    connector: Connector,
    object_type: str,
    records: Sequence[Any],
    now: datetime,
) -> BatchReport:
    """Take a batch of the connector's records (contacts, orders or a custom type).

    Raises:
        TidingsError: 422 for an empty or too large batch or a bad type name.
    """
    if not isinstance(records, list) or not 1 <= len(records) <= BATCH_MAX:
        raise invalid("invalid_batch", f"a list of 1-{BATCH_MAX} records", field="records")
    if not NAME.fullmatch(object_type):
        raise invalid("invalid_type", "1-64 lower-case letters, digits, - and _", field="type")
    started = time.perf_counter()
    batch = _Batch(session, workspace, connector, object_type, now)
    take = {"contact": _take_contact, "order": _take_order}.get(object_type, _take_object)
    results: list[RecordResult] = []
    for position, record in enumerate(records, start=1):
        result = RecordResult(position, None, "rejected")
        try:
            with session.begin_nested():
                external_id, at, fields = _envelope(record)
                result.external_id = external_id
                take(batch, result, external_id, at, fields, record)
        except _RejectedError as rejected:
            result.outcome = "rejected"
            result.errors.append({"field": rejected.field, "reason": rejected.reason})
        except TidingsError as error:
            result.outcome = "rejected"
            result.errors.append({"field": error.field, "reason": error.message})
        results.append(result)
    for result in results:
        for problem in result.errors:
            session.add(
                MappingFailure(
                    workspace_id=workspace.id,
                    connector_id=connector.id,
                    object_type=object_type,
                    external_id=result.external_id,
                    position=result.position,
                    field=problem["field"],
                    reason=str(problem["reason"])[:1000],
                    created_at=now,
                )
            )
    report = BatchReport(object_type, results)
    session.add(
        SyncBatch(
            workspace_id=workspace.id,
            connector_id=connector.id,
            object_type=object_type,
            received=len(results),
            created=report.count("created"),
            updated=report.count("updated"),
            unchanged=report.count("unchanged"),
            stale=report.count("stale"),
            rejected=report.count("rejected"),
            with_errors=sum(1 for r in results if r.errors),
            conflicts=sum(r.conflicts for r in results),
            duration_ms=int((time.perf_counter() - started) * 1000),
            created_at=now,
        )
    )
    session.flush()
    return report


def _errors(result: RecordResult, errors: Sequence[MappingError]) -> None:
    result.errors.extend({"field": e.field, "reason": e.reason} for e in errors)


def _take_contact(
    batch: _Batch,
    result: RecordResult,
    external_id: str,
    at: datetime,
    fields: dict[str, Any],
    record: Any,
) -> None:
    session, workspace, connector = batch.session, batch.workspace, batch.connector
    rules = rules_of(connector)
    mapped, errors = map_fields(fields, rules, sku_for=batch.sku_for)
    _errors(result, errors)
    tags = mapped.pop("tags", None)
    source_of = {r.target: r.source for r in rules}
    theirs: dict[str, Any] = {}
    for name, value in mapped.items():  # one by one: a bad value loses only its own field
        data = (
            {"custom_fields": {name.removeprefix(CUSTOM_PREFIX): value}}
            if name.startswith(CUSTOM_PREFIX)
            else {name: value}
        )
        try:
            theirs.update(contacts.stored_values(session, workspace, data))
        except TidingsError as error:
            result.errors.append({"field": source_of.get(name, name), "reason": error.message})
    synced = batch.synced(external_id)
    if synced is not None and at <= to_millisecond(synced.remote_updated_at):
        _stale_differences(batch, synced, external_id, theirs, at, result)
        return
    keys = {"external_ids": {connector.name: external_id}, **theirs}
    contact = contacts.find_match(session, workspace, keys, ("external_id", "phone", "email"))
    source = f"sync:{connector.name}"
    if contact is None:
        contact = contacts.create_contact(
            session,
            workspace=workspace,
            data={
                **_unflatten(theirs),
                "external_ids": {connector.name: external_id},
                **({"tags": _tag_list(tags)} if tags else {}),
            },
            source=source,
            now=batch.now,
        )
        result.outcome = "created"
    else:
        ours = contacts.current_values(contact, theirs)
        judgement = judge_fields(
            ours,
            theirs,
            synced.values if synced is not None else None,
            ours_at=contact.updated_at,
            theirs_at=at,
        )
        before = contact.updated_at
        changes: dict[str, Any] = _unflatten(judgement.take)
        changes["external_ids"] = {connector.name: external_id}
        if tags:
            changes["tags"] = _tag_list(tags)
        contacts.update_contact(
            session,
            workspace=workspace,
            contact_id=contact.id,
            data=changes,
            source=source,
            now=batch.now,
        )
        batch.queue(external_id, contact.id, judgement.conflicts, ours_at=before, theirs_at=at)
        result.conflicts = len(judgement.conflicts)
        result.outcome = "updated" if judgement.take or tags else "unchanged"
    result.local_id = contact.id
    batch.remember(synced, external_id, at=at, values=theirs, contact_id=contact.id)


def _tag_list(tags: Any) -> list[str]:
    if isinstance(tags, str):
        return [t.strip() for t in tags.split(",") if t.strip()]
    if isinstance(tags, list):
        return [str(t).strip() for t in tags if str(t).strip()]
    raise _RejectedError("tags", "a list of tag names or a comma-separated text")


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in flat.items() if not k.startswith(CUSTOM_PREFIX)}
    custom = {
        k.removeprefix(CUSTOM_PREFIX): v for k, v in flat.items() if k.startswith(CUSTOM_PREFIX)
    }
    return plain | ({"custom_fields": custom} if custom else {})


def _customer(batch: _Batch, record: dict[str, Any]) -> int | None:
    """The contact an order or object belongs to: by the connector's id for it, then by
    phone or e-mail; a phone or e-mail nobody has makes a new contact."""
    given = record.get("contact")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise _RejectedError("contact", "an object with external_id, phone or email")
    keys: dict[str, Any] = {}
    if given.get("external_id") not in (None, ""):
        keys["external_ids"] = {batch.connector.name: str(given["external_id"])}
    for name in ("phone", "email"):
        if given.get(name):
            keys[name] = given[name]
    if not keys:
        raise _RejectedError("contact", "an object with external_id, phone or email")
    found = contacts.find_match(
        batch.session, batch.workspace, keys, ("external_id", "phone", "email")
    )
    if found is not None:
        return int(found.id)
    if "phone" not in keys and "email" not in keys:
        raise _RejectedError("contact", "no contact has this id yet: send the contact first")
    created = contacts.create_contact(
        batch.session,
        workspace=batch.workspace,
        data={k: keys[k] for k in ("phone", "email", "external_ids") if k in keys},
        source=f"sync:{batch.connector.name}",
        now=batch.now,
    )
    return int(created.id)


def _stale_differences(
    batch: _Batch,
    synced: SyncedRecord,
    external_id: str,
    values: dict[str, Any],
    at: datetime,
    result: RecordResult,
) -> None:
    """An older version than the one kept loses; each field it would have changed waits for
    review, so nothing the other system said is dropped unseen. For a contact, "ours" is what
    the contact holds now (a person may have changed it since the newer version came), not
    the newer version's value."""
    kept: dict[str, Any] = synced.values or {}
    ours_at = synced.remote_updated_at
    if batch.object_type == "contact" and synced.contact_id is not None:
        held = contacts.hold_contacts(batch.session, batch.workspace, [synced.contact_id])
        if held:
            kept = contacts.current_values(held[0], values)
            ours_at = max(to_millisecond(held[0].updated_at), to_millisecond(ours_at))
    differences = [
        Difference(name, kept.get(name), value, Winner.OURS)
        for name, value in values.items()
        if kept.get(name) != value
    ]
    batch.queue(
        external_id,
        synced.contact_id,
        differences,
        ours_at=ours_at,
        theirs_at=at,
    )
    result.outcome, result.local_id, result.conflicts = "stale", synced.contact_id, len(differences)


def _take_order(
    batch: _Batch,
    result: RecordResult,
    external_id: str,
    at: datetime,
    fields: dict[str, Any],
    record: Any,
) -> None:
    values = _order_values(
        batch, result, {**fields, **{k: record[k] for k in record if k in ORDER_KEYS}}
    )
    synced = batch.synced(external_id)
    if synced is not None and at <= to_millisecond(synced.remote_updated_at):
        _stale_differences(batch, synced, external_id, values, at, result)
        return
    contact_id = _customer(batch, record) or (synced.contact_id if synced else None)
    if contact_id is None:
        raise _RejectedError("contact", "an order needs its customer: external_id, phone or email")
    previous = (synced.values or {}) if synced else None
    changed = {k: v for k, v in values.items() if previous is None or previous.get(k) != v}
    if previous is None:
        kind, result.outcome = "order.placed", "created"
    elif changed:
        status = changed.get("status")
        kind = f"order.{status}" if status in ORDER_STATUSES else "order.updated"
        result.outcome = "updated"
    else:
        kind, result.outcome = "", "unchanged"
    if kind:
        workspace = batch.workspace
        contacts.log_event(
            batch.session,
            workspace,
            contact_id,
            kind,
            min(at, batch.now),
            {
                "order_id": external_id,
                **values,
                "changed": sorted(changed),
                "source": batch.connector.name,
            },
            f"sync:{batch.connector.name}",
        )
    result.local_id = contact_id
    batch.remember(synced, external_id, at=at, values=values, contact_id=contact_id)


ORDER_KEYS = ("status", "total", "currency", "carrier", "tracking_url", "items")


def _order_values(batch: _Batch, result: RecordResult, given: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    status = given.get("status")
    if status is not None:
        if not isinstance(status, str) or not 1 <= len(status) <= 32:
            raise _RejectedError(
                "status", "a status such as placed, paid, shipped, delivered, cancelled"
            )
        values["status"] = status.strip().lower()
    for name, limit in (("total", 32), ("currency", 3), ("carrier", 100), ("tracking_url", 1000)):
        value = given.get(name)
        if value is not None:
            if (
                isinstance(value, bool)
                or not isinstance(value, str | int | float)
                or len(str(value)) > limit
            ):
                raise _RejectedError(name, f"a text or number of at most {limit} characters")
            values[name] = str(value)
    items = given.get("items")
    if items is not None:
        if not isinstance(items, list) or len(items) > 200:
            raise _RejectedError("items", "a list of at most 200 items")
        lines = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _RejectedError(
                    f"items[{index}]", "an object with sku or name, quantity, price"
                )
            called = item.get("name")
            sku: str | None = item.get("sku") or (batch.sku_for(str(called)) if called else None)
            if sku is None:
                result.errors.append(
                    {"field": f"items[{index}].name", "reason": f"no product is called {called!r}"}
                )
            lines.append(
                {
                    "sku": sku,
                    "name": called,
                    "quantity": item.get("quantity", 1),
                    "price": item.get("price"),
                }
            )
        values["items"] = lines
        values["skus"] = sorted({line["sku"] for line in lines if line["sku"]})
    return values


def _take_object(
    batch: _Batch,
    result: RecordResult,
    external_id: str,
    at: datetime,
    fields: dict[str, Any],
    record: Any,
) -> None:
    synced = batch.synced(external_id)
    if synced is not None and at <= to_millisecond(synced.remote_updated_at):
        _stale_differences(batch, synced, external_id, fields, at, result)
        return
    contact_id = (
        _customer(batch, record)
        if record.get("contact") is not None
        else (synced.contact_id if synced else None)
    )
    if synced is None:
        result.outcome = "created"
    else:
        result.outcome = "updated" if synced.values != fields else "unchanged"
    result.local_id = contact_id
    batch.remember(synced, external_id, at=at, values=fields, contact_id=contact_id)


# --- reading back -------------------------------------------------------------------------------


def list_records(
    session: Session,
    workspace: Workspace,
    connector: Connector,
    object_type: str,
    *,
    contact_id: int | None,
    limit: int,
) -> Sequence[SyncedRecord]:
    query = select(SyncedRecord).where(
        SyncedRecord.workspace_id == workspace.id,
        SyncedRecord.connector_id == connector.id,
        SyncedRecord.object_type == object_type,
    )
    if contact_id is not None:
        query = query.where(SyncedRecord.contact_id == contact_id)
    return session.scalars(query.order_by(SyncedRecord.id.desc()).limit(limit)).all()


def get_record_or_404(
    session: Session, workspace: Workspace, connector: Connector, object_type: str, external_id: str
) -> SyncedRecord:
    found = session.scalar(
        select(SyncedRecord).where(
            SyncedRecord.workspace_id == workspace.id,
            SyncedRecord.connector_id == connector.id,
            SyncedRecord.object_type == object_type,
            SyncedRecord.external_id == external_id,
        )
    )
    if found is None:
        raise not_found("record")
    return found


# --- the API's upsert, newer wins ---------------------------------------------------------------


@dataclass(frozen=True)
class DatedUpsert:
    contact: Any
    created: bool
    kept: list[str]  # fields changed here after the record's time: theirs waits for review


def upsert_newer_wins(
    session: Session,
    *,
    workspace: Workspace,
    data: dict[str, Any],
    match_on: Sequence[str],
    changed_at: datetime,
    source: str,
    now: datetime,
) -> DatedUpsert:
    """``POST /contacts/upsert`` with the time the record changed in the caller's system: the
    connector's rule, field by field. A field changed here later than ``changed_at`` keeps its
    value and the caller's waits in the review queue; an empty field is always filled.

    Raises:
        TidingsError: as ``contacts.upsert_contact``.
    """
    kept: list[str] = []

    def keep_newer(contact: Any, given: Any) -> dict[str, Any]:
        offered = {k: v for k, v in given.items() if k in STANDARD_FIELDS}
        if given.get("custom_fields"):
            offered["custom_fields"] = given["custom_fields"]
        theirs = contacts.stored_values(session, workspace, offered)
        ours = contacts.current_values(contact, theirs)
        times = contacts.field_change_times(session, workspace, contact)
        losers: list[Difference] = []
        for name, value in theirs.items():
            key = name.removeprefix(CUSTOM_PREFIX)
            judgement = judge_fields(
                {name: ours[name]},
                {name: value},
                None,
                ours_at=times.get(key, times["*"]),
                theirs_at=changed_at,
            )
            losers.extend(d for d in judgement.conflicts if d.winner is Winner.OURS)
        kept.extend(d.field for d in losers)
        for difference in losers:
            session.add(
                SyncConflict(
                    workspace_id=workspace.id,
                    connector_id=None,
                    object_type="contact",
                    external_id=None,
                    contact_id=contact.id,
                    field=difference.field,
                    ours={"value": difference.ours},
                    theirs={"value": difference.theirs},
                    winner=Winner.OURS.value,
                    ours_at=times.get(difference.field.removeprefix(CUSTOM_PREFIX), times["*"]),
                    theirs_at=changed_at,
                    state="open",
                    created_at=now,
                )
            )
        lost = set(kept)
        remaining = {k: v for k, v in given.items() if k not in lost}
        if given.get("custom_fields"):
            remaining["custom_fields"] = {
                k: v for k, v in given["custom_fields"].items() if CUSTOM_PREFIX + k not in lost
            }
        return remaining

    contact, created = contacts.upsert_contact(
        session,
        workspace=workspace,
        data=data,
        match_on=match_on,
        source=source,
        now=now,
        as_of=changed_at,
        keep_newer=keep_newer,
    )
    return DatedUpsert(contact, created, kept)


# --- the review queue ---------------------------------------------------------------------------


def list_conflicts(
    session: Session,
    workspace: Workspace,
    *,
    state: str | None,
    contact_id: int | None,
    before_id: int | None,
    limit: int,
) -> Sequence[SyncConflict]:
    query = select(SyncConflict).where(SyncConflict.workspace_id == workspace.id)
    if state is not None:
        if state not in {"open", "accepted", "reverted"}:
            raise invalid("invalid_state", "open, accepted or reverted", field="state")
        query = query.where(SyncConflict.state == state)
    if contact_id is not None:
        query = query.where(SyncConflict.contact_id == contact_id)
    if before_id is not None:
        query = query.where(SyncConflict.id < before_id)
    return session.scalars(query.order_by(SyncConflict.id.desc()).limit(limit)).all()


def _open_conflict(session: Session, workspace: Workspace, conflict_id: int) -> SyncConflict:
    found = session.get(SyncConflict, conflict_id)
    if found is None or found.workspace_id != workspace.id:
        raise not_found("conflict")
    if found.state != "open":
        raise conflict("already_resolved", f"this conflict was {found.state} already")
    return found


def accept_conflict(
    session: Session, *, workspace: Workspace, conflict_id: int, now: datetime
) -> SyncConflict:
    """The winner stays."""
    found = _open_conflict(session, workspace, conflict_id)
    found.state, found.resolved_at = "accepted", now
    session.flush()
    return found


def revert_conflict(
    session: Session, *, workspace: Workspace, conflict_id: int, now: datetime
) -> SyncConflict:
    """The loser's value is written instead: ours back if theirs overwrote it, theirs if ours
    was kept. For contacts only; other records are the other system's to change.

    Raises:
        TidingsError: 404, 409 when resolved already or not a contact's field.
    """
    found = _open_conflict(session, workspace, conflict_id)
    if found.object_type != "contact" or found.contact_id is None:
        raise conflict("not_revertible", "only a contact's fields can be reverted here")
    loser = found.ours if found.winner == Winner.THEIRS.value else found.theirs
    contacts.update_contact(
        session,
        workspace=workspace,
        contact_id=found.contact_id,
        data=_unflatten({found.field: loser.get("value")}),
        source="sync:review",
        now=now,
    )
    found.state, found.resolved_at = "reverted", now
    session.flush()
    return found


# --- errors and health --------------------------------------------------------------------------


def list_errors(
    session: Session,
    workspace: Workspace,
    connector: Connector,
    *,
    before_id: int | None,
    limit: int,
) -> Sequence[MappingFailure]:
    query = select(MappingFailure).where(
        MappingFailure.workspace_id == workspace.id, MappingFailure.connector_id == connector.id
    )
    if before_id is not None:
        query = query.where(MappingFailure.id < before_id)
    return session.scalars(query.order_by(MappingFailure.id.desc()).limit(limit)).all()


@dataclass(frozen=True)
class SyncFigures:
    received: int
    created: int
    updated: int
    unchanged: int
    stale: int
    rejected: int
    with_errors: int
    error_rate: float | None  # records with a mapping error or rejected, of those received
    conflicts: int
    open_conflicts: int
    batches: int
    median_batch_ms: int | None
    last_batch_at: datetime | None


def figures(
    session: Session,
    workspace: Workspace,
    connector: Connector,
    *,
    now: datetime,
    window: timedelta = timedelta(hours=24),
) -> SyncFigures:
    rows = session.scalars(
        select(SyncBatch).where(
            SyncBatch.connector_id == connector.id, SyncBatch.created_at >= now - window
        )
    ).all()
    received = sum(r.received for r in rows)
    failing = sum(r.with_errors for r in rows)  # rejected records are among them
    durations = sorted(r.duration_ms for r in rows)
    open_conflicts = int(
        session.scalar(
            select(func.count()).where(
                SyncConflict.connector_id == connector.id, SyncConflict.state == "open"
            )
        )
        or 0
    )
    return SyncFigures(
        received=received,
        created=sum(r.created for r in rows),
        updated=sum(r.updated for r in rows),
        unchanged=sum(r.unchanged for r in rows),
        stale=sum(r.stale for r in rows),
        rejected=sum(r.rejected for r in rows),
        with_errors=sum(r.with_errors for r in rows),
        error_rate=round(failing / received, 4) if received else None,
        conflicts=sum(r.conflicts for r in rows),
        open_conflicts=open_conflicts,
        batches=len(rows),
        median_batch_ms=durations[len(durations) // 2] if durations else None,
        last_batch_at=max((r.created_at for r in rows), default=None),
    )
