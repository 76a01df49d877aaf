"""HTTP routes of exports: the runs, a run now, and each file of a run (``/api/v1/exports``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from tidings.api.deps import Context
from tidings.exports import service
from tidings.exports.orm import ExportRun
from tidings.kernel.timestamps import Timestamp
from tidings.workspaces.domain import Role

router = APIRouter(tags=["exports"])


class ExportIn(BaseModel):
    kind: str = "incremental"


class ExportRead(BaseModel):
    id: int
    kind: str
    started_at: Timestamp
    finished_at: Timestamp | None
    local_day: str | None
    files: list[dict[str, Any]]
    error: str | None


def _read(run: ExportRun) -> ExportRead:
    return ExportRead(
        id=run.id,
        kind=run.kind,
        started_at=run.started_at,
        finished_at=run.finished_at,
        local_day=run.local_day,
        files=list(run.files.get("files", [])),
        error=run.error,
    )


@router.get("/exports")
def list_exports(ctx: Context, limit: int = Query(50, ge=1, le=200)) -> list[ExportRead]:
    """Incremental exports and the 02:00 unread-conversation exports, newest first."""
    ctx.require(Role.ADMIN, action="reading exports")
    return [_read(r) for r in service.list_runs(ctx.session, ctx.workspace, limit=limit)]


@router.post("/exports", status_code=201)
def run_export(body: ExportIn, ctx: Context) -> ExportRead:
    """Export now: ``incremental`` (what changed since the last one) or ``unread``."""
    ctx.require(Role.ADMIN, action="exporting")
    return _read(
        service.run_now(
            ctx.session,
            workspace=ctx.workspace,
            kind=body.kind,
            root=ctx.tidings.exports_root,
            now=ctx.now,
        )
    )


@router.get("/exports/{run_id}/{stream}")
def download(run_id: int, stream: str, ctx: Context) -> FileResponse:
    """One file of a run: gzip JSON Lines, one row per line."""
    ctx.require(Role.ADMIN, action="reading exports")
    path = service.file_of(ctx.session, ctx.workspace, ctx.tidings.exports_root, run_id, stream)
    return FileResponse(path, media_type="application/gzip", filename=path.name)
