"""Backups and exports (X4, C6): incremental exports of contacts, conversations, messages
and timeline events as gzip JSON Lines; the 02:00 export of unread conversations for the
morning's follow-up; the daily schedule per workspace time zone; retention of the archives.

The tables are read through the schema (``Base.metadata``), column by column, so a column
added later is exported without a change here. Files go under
``<exports dir>/<workspace slug>/YYYY/MM/DD/``; a file is written to a temporary name and
renamed when complete, so a crash never leaves a half file that looks whole.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Table, and_, func, select
from sqlalchemy.orm import Session

from tidings.db.base import Base
from tidings.exports.domain import (
    RETENTION,
    STREAMS,
    ExportKind,
    daily_due,
    expired,
    file_name,
)
from tidings.exports.orm import ExportRun
from tidings.kernel.errors import invalid, not_found
from tidings.messaging.domain import ConversationStatus
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

CHUNK = 5000


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _write(path: Path, rows: Iterator[dict[str, Any]]) -> tuple[int, int]:
    """Rows into ``path`` (gzip JSON Lines); returns (rows, bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with gzip.open(partial, "wb", compresslevel=6) as out:
        for row in rows:
            out.write(orjson.dumps(row, default=_json) + b"\n")
            count += 1
    os.replace(partial, path)
    return count, path.stat().st_size


def _rows(session: Session, table: Table, condition: Any) -> Iterator[dict[str, Any]]:
    """The rows in chunks by id, so that a million rows never sit in memory at once."""
    last = 0
    while True:
        chunk = session.execute(
            select(table).where(condition, table.c.id > last).order_by(table.c.id).limit(CHUNK)
        ).all()
        if not chunk:
            return
        for row in chunk:
            yield {k: _json(v) for k, v in row._mapping.items()}
        last = chunk[-1].id


def _last_run(session: Session, workspace: Workspace, kind: ExportKind) -> ExportRun | None:
    return session.scalar(
        select(ExportRun)
        .where(
            ExportRun.workspace_id == workspace.id,
            ExportRun.kind == kind.value,
            ExportRun.finished_at.is_not(None),
            ExportRun.error.is_(None),
        )
        .order_by(ExportRun.id.desc())
        .limit(1)
    )


def run_incremental(
    session: Session,
    *,
    workspace: Workspace,
    root: Path,
    now: datetime,
    local_day: str | None = None,
) -> ExportRun:
    """Everything that changed since the last incremental export (all of it the first time)."""
    previous = _last_run(session, workspace, ExportKind.INCREMENTAL)
    cursors = dict(previous.cursors) if previous else {}
    run = ExportRun(
        workspace_id=workspace.id,
        kind=ExportKind.INCREMENTAL.value,
        started_at=now,
        local_day=local_day,
        files={"files": []},
        cursors={},
    )
    files: list[dict[str, Any]] = []
    new_cursors: dict[str, Any] = {}
    folder = root / workspace.slug
    for stream in STREAMS:
        table = _table(stream.table)
        mine = table.c.workspace_id == workspace.id
        if stream.cursor == "id":
            since = int(cursors.get(stream.name) or 0)
            upto = int(
                session.scalar(select(func.coalesce(func.max(table.c.id), 0)).where(mine)) or 0
            )
            condition = and_(mine, table.c.id > since, table.c.id <= upto)
            new_cursors[stream.name] = upto
        else:
            since_at = (
                datetime.fromisoformat(cursors[stream.name]) if stream.name in cursors else None
            )
            condition = and_(mine, table.c.updated_at <= now)
            if since_at is not None:
                condition = and_(condition, table.c.updated_at > since_at)
            new_cursors[stream.name] = now.isoformat()
        path = folder / file_name(ExportKind.INCREMENTAL, stream.name, now)
        rows, size = _write(path, _rows(session, table, condition))
        files.append(
            {
                "stream": stream.name,
                "path": str(path.relative_to(root)),
                "rows": rows,
                "bytes": size,
            }
        )
    run.files, run.cursors, run.finished_at = {"files": files}, new_cursors, now
    session.add(run)
    session.flush()
    return run


def export_unread(
    session: Session,
    *,
    workspace: Workspace,
    root: Path,
    now: datetime,
    local_day: str | None = None,
) -> ExportRun:
    """Conversations with unread messages and not resolved, oldest waiting first, with the
    customer and their last message: the list for the morning's follow-up (X4)."""
    conversations, contacts, messages = (
        _table("conversations"),
        _table("contacts"),
        _table("messages"),
    )
    last_inbound = (
        select(messages.c.text)
        .where(
            messages.c.conversation_id == conversations.c.id, messages.c.direction == "in"
        )  # Direction.INBOUND
        .order_by(messages.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            conversations.c.id.label("conversation_id"),
            conversations.c.status,
            conversations.c.unread_count,
            conversations.c.assignee_id,
            conversations.c.team_id,
            conversations.c.last_inbound_at,
            conversations.c.last_human_reply_at,
            contacts.c.id.label("contact_id"),
            contacts.c.name,
            contacts.c.phone,
            last_inbound.label("last_message"),
        )
        .join(contacts, contacts.c.id == conversations.c.contact_id)
        .where(
            conversations.c.workspace_id == workspace.id,
            conversations.c.unread_count > 0,
            conversations.c.status != ConversationStatus.RESOLVED.value,
        )
        .order_by(conversations.c.last_inbound_at, conversations.c.id)
    )

    def rows() -> Iterator[dict[str, Any]]:
        for row in session.execute(query):
            item = {k: _json(v) for k, v in row._mapping.items()}
            waiting_since = row.last_inbound_at
            item["waiting_minutes"] = (
                int((now - waiting_since).total_seconds() // 60) if waiting_since else None
            )
            yield item

    path = root / workspace.slug / file_name(ExportKind.UNREAD, "conversations", now)
    count, size = _write(path, rows())
    run = ExportRun(
        workspace_id=workspace.id,
        kind=ExportKind.UNREAD.value,
        started_at=now,
        finished_at=now,
        local_day=local_day,
        files={
            "files": [
                {
                    "stream": "conversations",
                    "path": str(path.relative_to(root)),
                    "rows": count,
                    "bytes": size,
                }
            ]
        },
        cursors={},
    )
    session.add(run)
    session.flush()
    return run


def run_now(
    session: Session, *, workspace: Workspace, kind: str, root: Path, now: datetime
) -> ExportRun:
    """Raises ``TidingsError`` (422) for an unknown kind."""
    try:
        chosen = ExportKind(kind)
    except ValueError:
        raise invalid("invalid_kind", "incremental or unread", field="kind") from None
    if chosen is ExportKind.INCREMENTAL:
        return run_incremental(session, workspace=workspace, root=root, now=now)
    return export_unread(session, workspace=workspace, root=root, now=now)


def daily(session: Session, *, root: Path, now: datetime, keep_days: int | None = None) -> int:
    """For each workspace where it is past 02:00 and today's run has not happened: the
    incremental export, the unread conversations, and the pruning of old archives. The worker
    calls it every quarter of an hour; returns how many workspaces ran."""
    ran = 0
    for workspace in workspaces.list_workspaces(session):
        local_now = now.astimezone(ZoneInfo(workspace.timezone))
        last = _last_run(session, workspace, ExportKind.UNREAD)
        last_day = (
            datetime.strptime(last.local_day, "%Y-%m-%d").date()  # noqa: DTZ007 — a date only
            if last is not None and last.local_day
            else None
        )
        if not daily_due(local_now, last_day):
            continue
        day = local_now.date().isoformat()
        run_incremental(session, workspace=workspace, root=root, now=now, local_day=day)
        export_unread(session, workspace=workspace, root=root, now=now, local_day=day)
        prune(workspace=workspace, root=root, today=local_now.date(), keep_days=keep_days)
        ran += 1
    return ran


def prune(*, workspace: Workspace, root: Path, today: date, keep_days: int | None = None) -> int:
    """Delete the workspace's archives older than the retention period (180 days by default,
    C6); returns how many files went."""
    keep = timedelta(days=keep_days) if keep_days is not None else RETENTION
    removed = 0
    folder = root / workspace.slug
    if not folder.exists():
        return 0
    for path in sorted(folder.glob("*/*/*/*.jsonl.gz")):
        year, month, day = path.parent.parts[-3:]
        try:
            made = date(int(year), int(month), int(day))
        except ValueError:
            continue
        if expired(made, today, keep):
            path.unlink()
            removed += 1
    return removed


def list_runs(session: Session, workspace: Workspace, *, limit: int) -> list[ExportRun]:
    return list(
        session.scalars(
            select(ExportRun)
            .where(ExportRun.workspace_id == workspace.id)
            .order_by(ExportRun.id.desc())
            .limit(limit)
        )
    )


def file_of(session: Session, workspace: Workspace, root: Path, run_id: int, stream: str) -> Path:
    """The path of one of a run's files (404 when the run, the stream or the file is gone)."""
    run = session.get(ExportRun, run_id)
    if run is None or run.workspace_id != workspace.id:
        raise not_found("export")
    for entry in run.files.get("files", []):
        if entry["stream"] == stream:
            path: Path = (root / str(entry["path"])).resolve()
            if root.resolve() in path.parents and path.exists():
                return path
    raise not_found("export file", field="stream")


def read_file(path: Path) -> Iterator[dict[str, Any]]:
    """An archive's rows back (archives stay readable: C6)."""
    with gzip.open(path, "rb") as lines:
        for line in lines:
            yield orjson.loads(line)
