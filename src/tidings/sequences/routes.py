"""HTTP routes of sequences (S1-S7)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import PlainTextResponse

from tidings.api.deps import Context
from tidings.kernel.errors import TidingsError, invalid
from tidings.sequences import service
from tidings.sequences.orm import SequenceRecord
from tidings.sequences.schemas import (
    EnrollIn,
    EnrollmentRead,
    EnrollRead,
    EntryRead,
    ImportRead,
    MigrateIn,
    MigrationRead,
    PreviewIn,
    PreviewRead,
    SequenceDetail,
    SequenceIn,
    SequenceRead,
    StatusIn,
)
from tidings.webhooks.adapter import check_webhook_addresses
from tidings.workspaces.domain import Role

router = APIRouter(tags=["sequences"])


def _detail(ctx: Context, sequence: SequenceRecord) -> SequenceDetail:
    version = service.get_version(ctx.session, sequence)
    return SequenceDetail(
        **SequenceRead.model_validate(sequence).model_dump(),
        definition=version.definition,
        winners=service.split_winners(ctx.session, sequence),
    )


def _check_webhooks(ctx: Context, definition: object, prefix: str) -> None:
    """A webhook step may not point at a private address unless the operator allowed it."""
    policy = ctx.tidings.webhook_policy().widened(
        allow_private=ctx.workspace.allow_private_webhooks
    )
    check_webhook_addresses(definition, policy, prefix=prefix)


@router.post("/sequences", status_code=201)
def create_sequence(body: SequenceIn, ctx: Context) -> SequenceDetail:
    """Save a sequence (version 1). Errors name the place: ``definition.steps[2].duration``."""
    ctx.require(Role.ADMIN, action="editing sequences")
    with _under("definition"):
        sequence = service.create_sequence(
            ctx.session,
            workspace=ctx.workspace,
            data=body.definition,
            status=body.status,
            created_by=ctx.source,
            now=ctx.now,
        )
    _check_webhooks(ctx, body.definition, "definition")
    return _detail(ctx, sequence)


@router.get("/sequences")
def list_sequences(ctx: Context) -> list[SequenceRead]:
    """Every sequence, with how many of its enrollments are in each status."""
    counts = service.enrollment_counts(ctx.session, ctx.workspace)
    return [
        SequenceRead.model_validate(s).model_copy(update={"enrollments": counts.get(s.id, {})})
        for s in service.list_sequences(ctx.session, ctx.workspace)
    ]


@router.get("/sequences/{sequence_id}")
def read_sequence(sequence_id: int, ctx: Context) -> SequenceDetail:
    return _detail(ctx, service.get_sequence_or_404(ctx.session, ctx.workspace, sequence_id))


@router.put("/sequences/{sequence_id}")
def edit_sequence(sequence_id: int, body: SequenceIn, ctx: Context) -> SequenceDetail:
    """Save an edit as the next version; running enrollments keep theirs (see /migrate)."""
    ctx.require(Role.ADMIN, action="editing sequences")
    with _under("definition"):
        service.update_sequence(
            ctx.session,
            workspace=ctx.workspace,
            sequence_id=sequence_id,
            data=body.definition,
            created_by=ctx.source,
            now=ctx.now,
        )
    _check_webhooks(ctx, body.definition, "definition")
    return _detail(ctx, service.get_sequence_or_404(ctx.session, ctx.workspace, sequence_id))


@router.post("/sequences/{sequence_id}/status")
def change_status(sequence_id: int, body: StatusIn, ctx: Context) -> SequenceRead:
    """Activate, pause (everyone waits where they are), resume, or archive (everyone leaves)."""
    ctx.require(Role.ADMIN, action="running sequences")
    sequence = service.set_status(
        ctx.session,
        workspace=ctx.workspace,
        sequence_id=sequence_id,
        status=body.status,
        now=ctx.now,
    )
    return SequenceRead.model_validate(sequence)


@router.post("/sequences/{sequence_id}/enrollments")
def enroll(sequence_id: int, body: EnrollIn, ctx: Context) -> EnrollRead:
    """Enroll contacts by hand or from another system; each refusal says why."""
    sequence = service.get_sequence_or_404(ctx.session, ctx.workspace, sequence_id)
    result = service.enroll_contacts(
        ctx.session,
        workspace=ctx.workspace,
        sequence=sequence,
        contact_ids=body.contact_ids,
        source="api",
        now=ctx.now,
    )
    return EnrollRead(enrolled=result.enrolled, refused=result.refused)


@router.get("/sequences/{sequence_id}/enrollments")
def list_enrollments(
    sequence_id: int,
    ctx: Context,
    status: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EnrollmentRead]:
    return [
        EnrollmentRead.model_validate(e)
        for e in service.enrollments_of(
            ctx.session, ctx.workspace, sequence_id, status=status, after_id=after, limit=limit
        )
    ]


@router.delete("/sequences/{sequence_id}/enrollments/{contact_id}")
def remove_contact(sequence_id: int, contact_id: int, ctx: Context) -> EnrollmentRead:
    enrollment = service.remove_contact(
        ctx.session,
        workspace=ctx.workspace,
        sequence_id=sequence_id,
        contact_id=contact_id,
        now=ctx.now,
    )
    return EnrollmentRead.model_validate(enrollment)


@router.post("/sequences/{sequence_id}/migrate")
def migrate(sequence_id: int, body: MigrateIn, ctx: Context) -> MigrationRead:
    """Move running enrollments of an older version to the current one (``dry_run`` first:
    it is the default). Nobody is moved onto a step they have already run."""
    ctx.require(Role.ADMIN, action="migrating sequences")
    result = service.migrate_enrollments(
        ctx.session,
        workspace=ctx.workspace,
        sequence_id=sequence_id,
        from_version=body.from_version,
        mapping=body.mapping,
        dry_run=body.dry_run,
        now=ctx.now,
    )
    return MigrationRead(moved=result.moved, kept=result.kept, dry_run=body.dry_run)


@router.get("/sequences/{sequence_id}/statistics")
def statistics(
    sequence_id: int, ctx: Context, version: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, dict[str, int]]:
    """Per step: entered, sent, delivered, read, clicked, replied, converted, exited (S5)."""
    return service.step_statistics(ctx.session, ctx.workspace, sequence_id, version=version)


@router.get("/sequences/{sequence_id}/export", response_class=PlainTextResponse)
def export(
    sequence_id: int, ctx: Context, format: Annotated[str, Query(pattern="^(yaml|json)$")] = "yaml"
) -> PlainTextResponse:
    """The sequence file (S6), with the templates it uses."""
    text = service.export_sequence(
        ctx.session, ctx.workspace, sequence_id, as_json=format == "json"
    )
    media = "application/json" if format == "json" else "application/yaml"
    return PlainTextResponse(text, media_type=media)


@router.post("/sequences/import", status_code=201)
def import_file(
    ctx: Context,
    file: Annotated[str, Body(media_type="application/yaml", description="the sequence file")],
    name: str | None = None,
) -> ImportRead:
    """Create a sequence (a draft) from a file; errors give the path and the line."""
    ctx.require(Role.ADMIN, action="editing sequences")
    imported = service.import_sequence(
        ctx.session,
        workspace=ctx.workspace,
        text=file,
        name=name,
        created_by=ctx.source,
        now=ctx.now,
    )
    _check_webhooks(ctx, service.get_version(ctx.session, imported.sequence).definition, "file")
    return ImportRead(
        sequence=SequenceRead.model_validate(imported.sequence),
        templates_defined=imported.templates_defined,
        templates_without_number=imported.templates_without_number,
        email_templates_defined=imported.email_templates_defined,
    )


@router.post("/sequences/preview")
def preview(body: PreviewIn, ctx: Context) -> PreviewRead:
    """Run a test lead through a sequence on a virtual clock (S7): every message it would get,
    when, and the branches it takes, under the behaviours given. Nothing is sent."""
    if (body.definition is None) == (body.sequence_id is None):
        raise invalid("one_source", "give definition or sequence_id", field="definition")
    if body.definition is not None:
        with _under("definition"):
            definition = service.check_definition(ctx.session, ctx.workspace, body.definition)
    else:
        assert body.sequence_id is not None
        sequence = service.get_sequence_or_404(ctx.session, ctx.workspace, body.sequence_id)
        definition = service.definition_of(service.get_version(ctx.session, sequence))
    result = service.preview_sequence(
        ctx.session,
        workspace=ctx.workspace,
        definition=definition,
        behaviours=body.behaviours,
        contact=body.contact,
        start=body.start or ctx.now,
    )
    return PreviewRead(
        entries=[
            EntryRead(at=e.at, step_id=e.step_id, kind=e.kind, text=e.text) for e in result.entries
        ],
        ended=result.ended,
        end_reason=result.end_reason,
    )


@contextmanager
def _under(prefix: str) -> Iterator[None]:
    """Errors inside a request's ``definition`` name their field from the request's top."""
    try:
        yield
    except TidingsError as error:
        if error.http_status == 422 and error.field and error.field != "status":
            if error.field == "number_id":
                error.field = "settings.number_id"
            error.field = f"{prefix}.{error.field}"
        raise
