"""How times look at the edges: ISO 8601 in UTC with milliseconds (``2026-11-22T06:00:00.123Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_utc(moment: datetime) -> datetime:
    """A time given to the API, in UTC; one without a zone is refused, not guessed."""
    if moment.utcoffset() is None:
        raise ValueError("needs a time zone, e.g. 2026-11-22T14:00:00+08:00 or 2026-11-22T06:00Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999 once in UTC") from None


# Every time the API reads or writes: aware, in UTC, ISO 8601 with milliseconds.
Timestamp = Annotated[
    datetime, AfterValidator(in_utc), PlainSerializer(format_timestamp, return_type=str)
]
