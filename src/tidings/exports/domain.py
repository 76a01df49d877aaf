"""Backups and exports (X4, C6), the pure part: when a workspace's daily export is due, where
its files go, and which archives have outlived the retention period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath

DAILY_AT_HOUR = 2  # 02:00 in the workspace's time zone (X4)
RETENTION = timedelta(days=180)  # C6: history is kept at least this long


class ExportKind(StrEnum):
    INCREMENTAL = "incremental"  # what changed since the last one: contacts, conversations …
    UNREAD = "unread"  # conversations waiting for an answer, for the morning's follow-up


@dataclass(frozen=True)
class Stream:
    """One table of an incremental export and how its next part is found."""

    name: str
    table: str
    cursor: str  # updated_at (rows change) or id (rows are only appended)


STREAMS = (
    Stream("contacts", "contacts", "updated_at"),
    Stream("conversations", "conversations", "updated_at"),
    Stream("messages", "messages", "updated_at"),
    Stream("events", "contact_events", "id"),
)


def daily_due(local_now: datetime, last_local_day: date | None) -> bool:
    """The daily export runs once per local day, from 02:00 on (later if the worker was down)."""
    return local_now.hour >= DAILY_AT_HOUR and last_local_day != local_now.date()


def file_name(kind: ExportKind, stream: str, moment: datetime) -> PurePosixPath:
    """``2026/11/24/incremental-contacts-020000.jsonl.gz``, under the workspace's folder."""
    return PurePosixPath(f"{moment:%Y/%m/%d}", f"{kind.value}-{stream}-{moment:%H%M%S}.jsonl.gz")


def expired(made_on: date, today: date, keep: timedelta = RETENTION) -> bool:
    return today - made_on > keep
