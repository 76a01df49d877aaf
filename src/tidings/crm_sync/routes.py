"""HTTP routes of CRM sync: connectors and their mapping (``/api/v1/connectors``), incoming
batches of contacts, orders and custom objects, the mapping error log and health, and the
review queue of conflicts (``/api/v1/sync/conflicts``)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from tidings.api.deps import Context
from tidings.crm_sync import connector as connector_runs
from tidings.crm_sync import service
from tidings.crm_sync.orm import Connector, SyncConflict
from tidings.crm_sync.schemas import (
    BatchIn,
    BatchRead,
    ConflictRead,
    ConnectorIn,
    ConnectorRead,
    MappingErrorRead,
    RecordRead,
    RecordResultRead,
    SyncHealthRead,
)
from tidings.kernel.errors import invalid
from tidings.workspaces.domain import Role

router = APIRouter(tags=["sync"])


def _connector(connector: Connector) -> ConnectorRead:
    return ConnectorRead(
        id=connector.id,
        name=connector.name,
        kind=connector.kind,
        mapping=connector.mapping,
        created_at=connector.created_at,
        updated_at=connector.updated_at,
    )


def _conflict(row: SyncConflict) -> ConflictRead:
    return ConflictRead(
        id=row.id,
        connector_id=row.connector_id,
        object_type=row.object_type,
        external_id=row.external_id,
        contact_id=row.contact_id,
        field=row.field,
        ours=row.ours.get("value"),
        theirs=row.theirs.get("value"),
        winner=row.winner,
        ours_at=row.ours_at,
        theirs_at=row.theirs_at,
        state=row.state,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
    )


@router.get("/connectors")
def list_connectors(ctx: Context) -> list[ConnectorRead]:
    return [_connector(c) for c in service.list_connectors(ctx.session, ctx.workspace)]


@router.post("/connectors", status_code=201)
def create_connector(body: ConnectorIn, ctx: Context) -> ConnectorRead:
    ctx.require(Role.ADMIN, action="adding connectors")
    return _connector(
        service.save_connector(
            ctx.session,
            workspace=ctx.workspace,
            data=body.model_dump(exclude_none=True),
            now=ctx.now,
        )
    )


@router.get("/connectors/{name}")
def get_connector(name: str, ctx: Context) -> ConnectorRead:
    return _connector(service.get_connector_or_404(ctx.session, ctx.workspace, name))


@router.patch("/connectors/{name}")
def update_connector(name: str, body: ConnectorIn, ctx: Context) -> ConnectorRead:
    ctx.require(Role.ADMIN, action="changing connectors")
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    return _connector(
        service.save_connector(
            ctx.session,
            workspace=ctx.workspace,
            data=body.model_dump(exclude_unset=True),
            now=ctx.now,
            connector=connector,
        )
    )


@router.delete("/connectors/{name}", status_code=204)
def delete_connector(name: str, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting connectors")
    service.delete_connector(ctx.session, ctx.workspace, name)
    return Response(status_code=204)


def _batch(name: str, object_type: str, body: BatchIn, ctx: Context) -> BatchRead:
    ctx.require(Role.ADMIN, action="syncing records")
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    report = service.sync_batch(
        ctx.session,
        workspace=ctx.workspace,
        connector=connector,
        object_type=object_type,
        records=body.records,
        now=ctx.now,
    )
    return BatchRead(
        object_type=object_type,
        received=len(report.results),
        created=report.count("created"),
        updated=report.count("updated"),
        unchanged=report.count("unchanged"),
        stale=report.count("stale"),
        rejected=report.count("rejected"),
        conflicts=sum(r.conflicts for r in report.results),
        results=[RecordResultRead(**r.__dict__) for r in report.results],
    )


@router.post("/connectors/{name}/contacts")
def sync_contacts(name: str, body: BatchIn, ctx: Context) -> BatchRead:
    """Upsert contacts from the connector's system, mapped, judged per field (C4, C5)."""
    return _batch(name, "contact", body, ctx)


@router.post("/connectors/{name}/orders")
def sync_orders(name: str, body: BatchIn, ctx: Context) -> BatchRead:
    """Upsert orders: each new one and each change goes on its customer's timeline."""
    return _batch(name, "order", body, ctx)


@router.post("/connectors/{name}/objects/{object_type}")
def sync_objects(name: str, object_type: str, body: BatchIn, ctx: Context) -> BatchRead:
    """Upsert records of a type of your own (subscriptions, tickets, vehicles …)."""
    return _batch(name, object_type, body, ctx)


@router.get("/connectors/{name}/objects/{object_type}")
def list_records(
    name: str,
    object_type: str,
    ctx: Context,
    contact_id: int | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> list[RecordRead]:
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    rows = service.list_records(
        ctx.session, ctx.workspace, connector, object_type, contact_id=contact_id, limit=limit
    )
    return [RecordRead(**_record(r)) for r in rows]


@router.get("/connectors/{name}/objects/{object_type}/{external_id}")
def get_record(name: str, object_type: str, external_id: str, ctx: Context) -> RecordRead:
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    row = service.get_record_or_404(ctx.session, ctx.workspace, connector, object_type, external_id)
    return RecordRead(**_record(row))


def _record(row: object) -> dict[str, object]:
    return {
        key: getattr(row, key)
        for key in (
            "external_id",
            "object_type",
            "contact_id",
            "remote_updated_at",
            "values",
            "updated_at",
        )
    }


@router.get("/connectors/{name}/errors")
def list_errors(
    name: str,
    ctx: Context,
    before_id: int | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> list[MappingErrorRead]:
    """The mapping error log: which record, which field, why."""
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    rows = service.list_errors(
        ctx.session, ctx.workspace, connector, before_id=before_id, limit=limit
    )
    return [
        MappingErrorRead(
            id=r.id,
            object_type=r.object_type,
            external_id=r.external_id,
            position=r.position,
            field=r.field,
            reason=r.reason,
            created_at=r.created_at,
        )
        for r in rows
    ]


@router.get("/connectors/{name}/health")
def connector_health(
    name: str, ctx: Context, hours: int = Query(24, ge=1, le=24 * 30)
) -> SyncHealthRead:
    """Records received, taken, stale and rejected, the error rate and open conflicts (O1)."""
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    found = service.figures(
        ctx.session, ctx.workspace, connector, now=ctx.now, window=timedelta(hours=hours)
    )
    waiting = (
        connector_runs.backlog(ctx.session, connector, now=ctx.now).__dict__
        if connector.kind == "hubspot"
        else None
    )
    return SyncHealthRead(
        **found.__dict__,
        success_rate=None if found.error_rate is None else round(1 - found.error_rate, 4),
        backlog=waiting,
    )


@router.get("/sync/conflicts")
def list_conflicts(
    ctx: Context,
    state: str | None = Query("open", description="open, accepted or reverted"),
    contact_id: int | None = None,
    before_id: int | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> list[ConflictRead]:
    """Differences both sides made: who won, and the value that lost (C4)."""
    rows = service.list_conflicts(
        ctx.session,
        ctx.workspace,
        state=state,
        contact_id=contact_id,
        before_id=before_id,
        limit=limit,
    )
    return [_conflict(r) for r in rows]


@router.post("/sync/conflicts/{conflict_id}/accept")
def accept_conflict(conflict_id: int, ctx: Context) -> ConflictRead:
    """The winner stays."""
    return _conflict(
        service.accept_conflict(
            ctx.session, workspace=ctx.workspace, conflict_id=conflict_id, now=ctx.now
        )
    )


@router.post("/sync/conflicts/{conflict_id}/revert")
def revert_conflict(conflict_id: int, ctx: Context) -> ConflictRead:
    """The value that lost is written to the contact instead."""
    return _conflict(
        service.revert_conflict(
            ctx.session, workspace=ctx.workspace, conflict_id=conflict_id, now=ctx.now
        )
    )


class TokenIn(BaseModel):
    token: str = Field(description="the CRM's access token (HubSpot: a private app's token)")


@router.put("/connectors/{name}/token", status_code=204)
def set_token(name: str, body: TokenIn, ctx: Context) -> Response:
    """Switch a HubSpot connector on: the token is sealed and never shown again. From the next
    worker pass, changes here go out at once and HubSpot is pulled every 15 minutes."""
    ctx.require(Role.ADMIN, action="connecting a CRM")
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    if connector.kind != "hubspot":
        raise invalid("not_a_crm", "only hubspot connectors take a token", field="kind")
    connector_runs.set_token(
        ctx.session, connector, token=body.token, box=ctx.tidings.secret_box, now=ctx.now
    )
    return Response(status_code=204)


@router.post("/connectors/{name}/pull", status_code=202)
def pull_now(name: str, ctx: Context) -> Response:
    """Pull from the CRM at the next worker pass instead of waiting for the schedule."""
    ctx.require(Role.ADMIN, action="syncing records")
    connector = service.get_connector_or_404(ctx.session, ctx.workspace, name)
    connector_runs.request_pull(ctx.session, connector, now=ctx.now)
    return Response(status_code=202)
