"""Tables of exports: one row per run, with its files and where the next one starts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.db.base import Base, WorkspaceOwned


class ExportRun(WorkspaceOwned, Base):
    __tablename__ = "export_runs"
    __table_args__ = (Index("ix_export_runs_workspace_kind", "workspace_id", "kind", "id"),)

    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    local_day: Mapped[str | None] = mapped_column(String(10))  # for the daily runs
    files: Mapped[dict[str, Any]]  # {"files": [{"stream", "path", "rows", "bytes"}]}
    cursors: Mapped[dict[str, Any]]  # where the next incremental export starts, per stream
    error: Mapped[str | None] = mapped_column(Text)
