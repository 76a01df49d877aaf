"""The one place that reads the time.

Everything else takes a :class:`Clock` (or a ``now`` argument) so that sequences, caps and
windows can be run on a :class:`VirtualClock` in previews, tests and the demo's fast-forward.
All datetimes are aware and in UTC.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """Return the current time, aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for measuring durations."""
        return time.monotonic()


class VirtualClock:
    """A clock that only moves when told to; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time.

        Raises:
            ValueError: if ``delta`` is negative; virtual time never runs backwards.
        """
        if delta < timedelta(0):
            raise ValueError("a virtual clock cannot go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``, which must not be earlier than the current time."""
        self.advance(ensure_utc(moment) - self.now())


def ensure_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime.

    Raises:
        ValueError: for a naive datetime, whose meaning cannot be known.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not accepted; give a time zone")
    return moment.astimezone(UTC)
