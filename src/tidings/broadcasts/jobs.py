"""The worker's part of broadcasts: planning due ones chunk by chunk, finishing sent ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.broadcasts import service
from tidings.broadcasts.domain import BroadcastStatus
from tidings.broadcasts.orm import Broadcast

CHUNK = 2_000  # recipients per transaction: short enough for SQLite's one writer


@dataclass
class BroadcastPlanner:
    """Plans one chunk of the oldest due broadcast per batch (others wait their turn, and a
    crash loses at most the chunk in flight: the cursor and idempotency keys resume it)."""

    name: str = "broadcasts"
    chunk: int = CHUNK

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        due = session.scalars(
            select(Broadcast)
            .where(
                Broadcast.status.in_(
                    (BroadcastStatus.SCHEDULED.value, BroadcastStatus.PLANNING.value)
                ),
                Broadcast.send_at <= now,
            )
            .order_by(Broadcast.send_at, Broadcast.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if due is not None:
            planned = service.plan_chunk(session, due, now=now, limit=self.chunk)
            # Tell the worker loop to come back at once while this broadcast has more.
            return limit if due.status == BroadcastStatus.PLANNING.value else planned
        sending = session.scalars(
            select(Broadcast)
            .where(Broadcast.status == BroadcastStatus.SENDING.value)
            .order_by(Broadcast.updated_at)
            .limit(10)
            .with_for_update(skip_locked=True)
        ).all()
        for broadcast in sending:
            service.finish_if_done(session, broadcast, now=now)
        return 0
