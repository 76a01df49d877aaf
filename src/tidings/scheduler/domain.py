"""Pure timing rules of the scheduler: periodic slots and retry backoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PeriodicJob:
    """A job that runs once per slot of ``every``, on whichever worker claims the slot first."""

    name: str
    every: timedelta

    def slot_for(self, now: datetime) -> datetime:
        """The start of the slot that contains ``now`` (slots are aligned on the epoch)."""
        return slot_start(now, self.every)


def slot_start(now: datetime, every: timedelta) -> datetime:
    if every <= timedelta(0):
        raise ValueError("a period must be positive")
    elapsed = now - EPOCH
    return EPOCH + (elapsed // every) * every


def retry_delay(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: ``base``, 2×, 4× … never more than ``cap``. ``attempt`` starts at 1."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    delay: timedelta = base * (2 ** (attempt - 1))
    return min(delay, cap)
