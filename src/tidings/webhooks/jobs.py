"""The worker's two parts of outgoing webhooks: the fan-out (timeline events into
deliveries, in the batch's transaction) and the dispatcher (claim, post outside any
transaction, record)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from tidings.db.session import Database
from tidings.kernel.clock import Clock
from tidings.kernel.sealing import SecretBox
from tidings.webhooks import service
from tidings.webhooks.adapter import Courier, Parcel


@dataclass
class WebhookFanout:
    """Work source: reads the contacts' timeline and queues a delivery per subscription that
    wants each event."""

    name: str = "webhooks.fan_out"

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        return service.fan_out(session, now=now, limit=limit)


@dataclass
class WebhookDispatcher:
    """Pass source: claims due deliveries in one short transaction, posts them concurrently
    with no transaction open, and records the answers in another."""

    box: SecretBox
    courier: Courier
    name: str = "webhooks.dispatch"

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        with db.transaction(background=True) as session:
            claimed = service.claim(session, box=self.box, now=clock.now(), limit=limit)
        if not claimed:
            return 0
        receipts = self.courier.deliver(
            [
                Parcel(
                    delivery_id=c.delivery_id,
                    url=c.url,
                    secret=c.secret,
                    body=c.body,
                    event_id=c.event_id,
                    event_type=c.event_type,
                    attempt=c.attempt,
                    allow_private=c.allow_private,
                )
                for c in claimed
            ],
            clock.now(),
        )
        with db.transaction(background=True) as session:
            service.record(
                session,
                [
                    service.Answer(r.delivery_id, r.status_code, r.error, r.duration_ms)
                    for r in receipts
                ],
                now=clock.now(),
            )
        return len(claimed)

    def close(self) -> None:
        self.courier.close()
