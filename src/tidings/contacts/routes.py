"""HTTP routes of contacts and what hangs off them."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tidings.api.deps import CallerContext, Context, decode_cursor, encode_cursor
from tidings.contacts import imports, jobs, repository, service
from tidings.contacts.csv_import import write_export
from tidings.contacts.domain import (
    Channel,
    ConsentPurpose,
    ConsentStatus,
    CustomFieldType,
    LifecycleStage,
    normalize_email,
    normalize_phone,
    prepare_custom_fields,
    tag_key,
)
from tidings.contacts.orm import ContactEvent, ContactImport, ContactMerge
from tidings.contacts.schemas import (
    ConsentIn,
    ConsentRead,
    ContactCreate,
    ContactPage,
    ContactRead,
    ContactUpdate,
    ContactUpsert,
    CustomFieldIn,
    CustomFieldRead,
    DuplicateRead,
    DuplicatesPage,
    EventIn,
    EventPage,
    EventRead,
    ImportJobPage,
    ImportJobRead,
    ImportProblem,
    ImportResult,
    ListIn,
    ListRead,
    MembershipIn,
    MergeIn,
    MergeRead,
    TagRead,
    TagsIn,
    UpsertResult,
)
from tidings.contacts.service import ContactView
from tidings.crm_sync import service as crm_sync
from tidings.kernel.errors import invalid
from tidings.workspaces.domain import Role
from tidings.workspaces.service import policy_for

router = APIRouter(tags=["contacts"])
MAX_IMPORT_BYTES = 20 * 1024 * 1024
MAX_BACKGROUND_IMPORT_BYTES = 100 * 1024 * 1024
# Rows per transaction of an import through the API: each holds SQLite's writer for
# a fraction of a second, and other writers go in between.
API_IMPORT_BATCH = 1000
T = TypeVar("T")
MAX_PROBLEMS_SHOWN = 500


def _read(view: ContactView) -> ContactRead:
    c = view.contact
    return ContactRead(
        id=c.id,
        name=c.name,
        first_name=c.first_name,
        last_name=c.last_name,
        phone=c.phone,
        email=c.email,
        locale=c.locale,
        timezone=c.timezone,
        country=c.country,
        lifecycle_stage=LifecycleStage(c.lifecycle_stage),
        score=c.score,
        custom_fields=c.custom_fields,
        lead_source=c.lead_source,
        do_not_contact=c.do_not_contact,
        activity_score=c.activity_score,
        sentiment=c.sentiment,
        churn_risk=c.churn_risk,
        tags=view.tags,
        list_ids=view.list_ids,
        consents=[ConsentRead.model_validate(x) for x in view.consents],
        external_ids=view.external_ids,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def _read_one(ctx: Context, contact_id: int) -> ContactRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    return _read(service.describe_contacts(ctx.session, [contact])[0])


def _event_read(event: ContactEvent) -> EventRead:
    return EventRead(
        id=event.id,
        contact_id=event.contact_id,
        type=event.event_type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        source=event.source,
        properties=event.properties,
    )


@router.get("/contacts")
def search_contacts(
    request: Request,
    ctx: Context,
    q: Annotated[str | None, Query(description="Part of a name, phone or e-mail.")] = None,
    phone: Annotated[str | None, Query(description="Exact phone, local or international.")] = None,
    email: str | None = None,
    tag: Annotated[
        list[str] | None, Query(description="Repeat for contacts with all tags.")
    ] = None,
    list_id: int | None = None,
    lifecycle_stage: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ContactPage:
    """Search contacts, newest first. Filter custom fields with ``field.<key>=value``."""
    specs = service.field_specs(ctx.session, ctx.workspace)
    custom = {}
    for name, value in request.query_params.items():
        if name.startswith("field."):
            key = name.removeprefix("field.")
            if key not in specs:
                raise invalid("unknown_field", f"no custom field {key!r}", field=name)
            custom[key] = prepare_custom_fields({key: value}, specs)[key]
    criteria = repository.ContactFilter(
        text=q.strip() if q and q.strip() else None,
        phone=normalize_phone(phone, ctx.workspace.default_region) if phone else None,
        email=normalize_email(email) if email else None,
        tag_keys=tuple(tag_key(t) for t in tag or []),
        list_id=list_id,
        lifecycle_stage=lifecycle_stage,
        custom_fields=custom,
    )
    contacts = repository.search_contacts(
        ctx.session, ctx.workspace, criteria, before_id=decode_cursor(cursor), limit=limit
    )
    views = service.describe_contacts(ctx.session, contacts)
    next_cursor = encode_cursor(contacts[-1].id) if len(contacts) == limit else None
    return ContactPage(items=[_read(v) for v in views], next_cursor=next_cursor)


@router.post("/contacts", status_code=201)
def create_contact(body: ContactCreate, ctx: Context) -> ContactRead:
    contact = service.create_contact(
        ctx.session,
        workspace=ctx.workspace,
        data=body.model_dump(exclude_unset=True),
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact.id)


@router.post("/contacts/upsert")
def upsert_contact(body: ContactUpsert, ctx: Context) -> UpsertResult:
    """Update the contact the keys find, or create it. With ``updated_at``, newer wins field by
    field, as with a CRM connector."""
    data = body.model_dump(exclude_unset=True, exclude={"match_on", "updated_at"})
    if body.updated_at is not None:
        dated = crm_sync.upsert_newer_wins(
            ctx.session,
            workspace=ctx.workspace,
            data=data,
            match_on=body.match_on,
            changed_at=body.updated_at,
            source=ctx.source,
            now=ctx.now,
        )
        return UpsertResult(
            created=dated.created, contact=_read_one(ctx, dated.contact.id), kept=dated.kept
        )
    contact, created = service.upsert_contact(
        ctx.session,
        workspace=ctx.workspace,
        data=data,
        match_on=body.match_on,
        source=ctx.source,
        now=ctx.now,
    )
    return UpsertResult(created=created, contact=_read_one(ctx, contact.id))


@router.get("/contacts/export", response_class=StreamingResponse)
def export_contacts(ctx: Context) -> StreamingResponse:
    """All contacts as CSV, in the format ``/contacts/import`` reads back; for admins, and
    for agents where the workspace's ``agents_may_export_contacts`` allows it."""
    if not policy_for(ctx.workspace).agents_may_export_contacts:
        ctx.require(Role.ADMIN, action="exporting every contact")
    buffer = io.StringIO()
    for _ in write_export(ctx.session, workspace=ctx.workspace, out=buffer):
        pass
    filename = f"{ctx.workspace.slug}-contacts.csv"
    return StreamingResponse(
        iter([buffer.getvalue()]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/contacts/import")
async def import_contacts(request: Request, ctx: CallerContext) -> ImportResult:
    """Import a CSV body (``text/csv``, UTF-8); valid rows are upserted, the rest reported.

    Each batch of rows is committed on its own, so that webhooks and agents keep writing while
    a large file goes in; importing the same file again changes nothing.
    """
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise invalid(
            "too_large",
            "upload at most 20 MB here; use `tidings contacts import` for more",
            field="body",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise invalid(
            "not_utf8", f"the body is not UTF-8 text ({error.reason})", field="body"
        ) from None
    tidings = ctx.tidings

    def run_batch(work: Callable[[Session], T]) -> T:
        with tidings.db.transaction() as session:
            return work(session)

    report = await run_in_threadpool(
        partial(
            jobs.import_csv,
            io.StringIO(text, newline=""),
            workspace=ctx.workspace,
            run_batch=run_batch,
            clock=tidings.clock,
            source=ctx.source,
            column_map=_column_map(request),
            batch_size=API_IMPORT_BATCH,
        )
    )
    return ImportResult(
        rows=report.rows,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        failed=report.failed,
        warnings=report.warnings,
        problems=[
            ImportProblem(line=line, column=p.column, value=p.value, code=p.code, message=p.message)
            for line, p in report.problems[:MAX_PROBLEMS_SHOWN]
        ],
    )


@router.post("/contacts/imports", status_code=202)
async def queue_import(
    request: Request,
    response: Response,
    ctx: Context,
    name: Annotated[
        str | None, Query(max_length=200, description="The file's name, to tell imports apart.")
    ] = None,
) -> ImportJobRead:
    """Import a CSV body (``text/csv``, UTF-8, up to 100 MB) in the background: answered at
    once with the import, whose progress ``GET /contacts/imports/{id}`` gives until it is
    ``done`` (or ``failed``, with the line). Same columns and ``map=`` as
    ``/contacts/import``; the header is checked before the answer."""
    body = await request.body()  # read in full before the transaction opened
    job = await run_in_threadpool(
        partial(
            imports.queue_import,
            ctx.session,
            workspace=ctx.workspace,
            body=body,
            column_map=_column_map(request),
            file_name=name,
            source=ctx.source,
            now=ctx.now,
        )
    )
    response.headers["Location"] = f"/api/v1/contacts/imports/{job.id}"
    return _import_job(job)


@router.get("/contacts/imports")
def list_imports(
    ctx: Context, cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ImportJobPage:
    """The workspace's imports, newest first."""
    rows = imports.list_imports(
        ctx.session, ctx.workspace, before_id=decode_cursor(cursor), limit=limit
    )
    next_cursor = encode_cursor(rows[-1].id) if len(rows) == limit else None
    return ImportJobPage(items=[_import_job(r) for r in rows], next_cursor=next_cursor)


@router.get("/contacts/imports/{import_id}")
def read_import(import_id: int, ctx: Context) -> ImportJobRead:
    return _import_job(imports.get_import_or_404(ctx.session, ctx.workspace, import_id))


def _import_job(job: ContactImport) -> ImportJobRead:
    return ImportJobRead(
        id=job.id,
        status=job.status,
        file_name=job.file_name,
        size_bytes=job.size_bytes,
        rows=job.rows,
        created=job.created,
        updated=job.updated,
        unchanged=job.unchanged,
        failed=job.failed,
        warnings=list(job.warnings),
        problems=[ImportProblem(**p) for p in job.problems],
        error=job.error,
        error_field=job.error_field,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _column_map(request: Request) -> dict[str, str]:
    return dict(p.split("=", 1) for p in request.query_params.getlist("map") if "=" in p)


@router.get("/contacts/{contact_id}")
def read_contact(contact_id: int, ctx: Context) -> ContactRead:
    return _read_one(ctx, contact_id)


@router.patch("/contacts/{contact_id}")
def update_contact(contact_id: int, body: ContactUpdate, ctx: Context) -> ContactRead:
    service.update_contact(
        ctx.session,
        workspace=ctx.workspace,
        contact_id=contact_id,
        data=body.model_dump(exclude_unset=True),
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.delete("/contacts/{contact_id}", status_code=204)
def delete_contact(contact_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="deleting contacts")
    service.delete_contact(ctx.session, workspace=ctx.workspace, contact_id=contact_id)


@router.post("/contacts/{contact_id}/tags")
def tag_contact(contact_id: int, body: TagsIn, ctx: Context) -> ContactRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    service.add_tags(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        names=body.tags,
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.delete("/contacts/{contact_id}/tags/{tag}")
def untag_contact(contact_id: int, tag: str, ctx: Context) -> ContactRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    service.remove_tag(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        name=tag,
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.post("/contacts/{contact_id}/lists")
def add_to_list(contact_id: int, body: MembershipIn, ctx: Context) -> ContactRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    service.join_list(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        list_id=body.list_id,
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.delete("/contacts/{contact_id}/lists/{list_id}")
def remove_from_list(contact_id: int, list_id: int, ctx: Context) -> ContactRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    service.leave_list(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        list_id=list_id,
        source=ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.put("/contacts/{contact_id}/consents")
def set_consent(contact_id: int, body: ConsentIn, ctx: Context) -> ContactRead:
    """Record opt-in or opt-out for one channel and purpose, with its source (C1, P5)."""
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    service.set_consent(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        channel=Channel(body.channel),
        purpose=ConsentPurpose(body.purpose),
        status=ConsentStatus(body.status),
        source=body.source or ctx.source,
        now=ctx.now,
    )
    return _read_one(ctx, contact_id)


@router.post("/contacts/{contact_id}/events", status_code=201)
def record_event(contact_id: int, body: EventIn, ctx: Context) -> EventRead:
    contact = service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    event, _ = service.record_event(
        ctx.session,
        workspace=ctx.workspace,
        contact=contact,
        event_type=body.type,
        occurred_at=body.occurred_at,
        properties=body.properties,
        source=ctx.source,
        idempotency_key=body.idempotency_key,
        now=ctx.now,
    )
    return _event_read(event)


@router.get("/contacts/{contact_id}/events")
def list_events(
    contact_id: int,
    ctx: Context,
    type: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    service.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    events = repository.list_events(
        ctx.session,
        ctx.workspace,
        contact_id,
        event_type=type,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    next_cursor = encode_cursor(events[-1].id) if len(events) == limit else None
    return EventPage(items=[_event_read(e) for e in events], next_cursor=next_cursor)


@router.get("/tags")
def list_tags(ctx: Context) -> list[TagRead]:
    return [
        TagRead(id=t.id, name=t.name, contacts=n, created_at=t.created_at)
        for t, n in repository.list_tags_with_counts(ctx.session, ctx.workspace)
    ]


@router.delete("/tags/{tag_id}", status_code=204)
def delete_tag(tag_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="deleting tags")
    service.delete_tag(ctx.session, workspace=ctx.workspace, tag_id=tag_id)


@router.get("/lists")
def list_lists(ctx: Context) -> list[ListRead]:
    return [
        ListRead(
            id=lst.id,
            name=lst.name,
            description=lst.description,
            contacts=n,
            created_at=lst.created_at,
        )
        for lst, n in repository.list_lists_with_counts(ctx.session, ctx.workspace)
    ]


@router.post("/lists", status_code=201)
def create_list(body: ListIn, ctx: Context) -> ListRead:
    created = service.create_list(
        ctx.session,
        workspace=ctx.workspace,
        name=body.name,
        description=body.description,
        now=ctx.now,
    )
    return ListRead(
        id=created.id,
        name=created.name,
        description=created.description,
        contacts=0,
        created_at=created.created_at,
    )


@router.delete("/lists/{list_id}", status_code=204)
def delete_list(list_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="deleting lists")
    service.delete_list(ctx.session, workspace=ctx.workspace, list_id=list_id)


@router.get("/custom-fields")
def list_custom_fields(ctx: Context) -> list[CustomFieldRead]:
    return [
        CustomFieldRead(
            key=d.key,
            label=d.label,
            type=CustomFieldType(d.field_type),
            choices=d.choices,
            created_at=d.created_at,
        )
        for d in repository.field_definitions(ctx.session, ctx.workspace).values()
    ]


@router.post("/custom-fields", status_code=201)
def create_custom_field(body: CustomFieldIn, ctx: Context) -> CustomFieldRead:
    ctx.require(Role.ADMIN, action="defining custom fields")
    d = service.create_field_definition(
        ctx.session,
        workspace=ctx.workspace,
        key=body.key,
        label=body.label,
        field_type=body.type,
        choices=body.choices,
        now=ctx.now,
    )
    return CustomFieldRead(
        key=d.key,
        label=d.label,
        type=CustomFieldType(d.field_type),
        choices=d.choices,
        created_at=d.created_at,
    )


@router.delete("/custom-fields/{key}", status_code=204)
def delete_custom_field(key: str, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="deleting custom fields")
    service.delete_field_definition(ctx.session, workspace=ctx.workspace, key=key)


# --- duplicates and merges (C3) -----------------------------------------------------------------


def _merge(entry: ContactMerge) -> MergeRead:
    steps = entry.journal.get("steps", [])
    return MergeRead(
        id=entry.id,
        survivor_id=entry.survivor_id,
        merged_id=entry.merged_id,
        reasons=list(entry.reasons.get("reasons", [])),
        merged_by=entry.merged_by,
        merged_at=entry.merged_at,
        undone_at=entry.undone_at,
        restored_id=entry.restored_id,
        moved_rows=sum(len(s["keys"]) for s in steps if s["do"] == "moved"),
        removed_duplicates=sum(1 for s in steps if s["do"] == "removed"),
    )


@router.get("/duplicates")
def list_duplicates(ctx: Context, limit: int = Query(50, ge=1, le=500)) -> DuplicatesPage:
    """Pairs of contacts that are probably one person, best first, with the reasons: names
    at least 80% alike and the same e-mail or the same SKU bought within 90 days."""
    found, findings = service.duplicate_candidates(
        ctx.session, ctx.workspace, now=ctx.now, limit=limit
    )
    ids = sorted({c.first for c in found} | {c.second for c in found})
    views = {
        v.contact.id: _read(v)
        for v in service.describe_contacts(
            ctx.session, service.hold_contacts(ctx.session, ctx.workspace, ids)
        )
    }
    return DuplicatesPage(
        items=[
            DuplicateRead(
                first=views[c.first],
                second=views[c.second],
                name_similarity=c.name_similarity,
                reasons=list(c.reasons),
            )
            for c in found
            if c.first in views and c.second in views
        ],
        compared_pairs=findings.compared,
        skipped_blocks=len(findings.skipped_blocks),
    )


@router.post("/merges", status_code=201)
def merge_contacts(body: MergeIn, ctx: Context) -> MergeRead:
    """Merge one contact into another: every conversation, message, event, tag, list, consent
    and enrollment of both is kept; an audit entry records it, and it can be undone."""
    ctx.require(Role.ADMIN, action="merging contacts")
    entry = service.merge_contacts(
        ctx.session,
        workspace=ctx.workspace,
        survivor_id=body.survivor_id,
        merged_id=body.merged_id,
        reasons=body.reasons,
        by=ctx.principal.label,
        now=ctx.now,
    )
    return _merge(entry)


@router.get("/merges")
def list_merges(
    ctx: Context, contact_id: int | None = None, limit: int = Query(50, ge=1, le=200)
) -> list[MergeRead]:
    return [
        _merge(m)
        for m in service.list_merges(ctx.session, ctx.workspace, contact_id=contact_id, limit=limit)
    ]


@router.post("/merges/{merge_id}/undo")
def undo_merge(merge_id: int, ctx: Context) -> MergeRead:
    """The merged contact comes back, under a new id, with everything that was its own."""
    ctx.require(Role.ADMIN, action="undoing merges")
    return _merge(
        service.undo_merge(ctx.session, workspace=ctx.workspace, merge_id=merge_id, now=ctx.now)
    )
