"""Planning a broadcast (#5, P8): every recipient of a 1,000,000-contact audience decided by the
full sending policy (consent, caps over the contact's history, quiet hours, pause) and
queued, side by side with the straightforward way — ``queue_message`` once per recipient.

    python -m bench.broadcast_planning [--contacts 1000000] [--baseline 3000] [--database-url …]

The audience mixes what the policy must look at: a tenth opted out of marketing, a third
opted in, a twentieth with a promotion sent three days ago (the weekly cap defers them),
contacts in four time zones. Target: ≥ 20,000 recipients/s on SQLite.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from bench.common import PINNED, Figures, fresh_installation, machine, make_workspace, measure
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.broadcasts import service as broadcasts
from tidings.broadcasts.jobs import BroadcastPlanner
from tidings.channels import service as channels
from tidings.contacts.orm import Consent, Contact
from tidings.db.base import table_of
from tidings.kernel.clock import VirtualClock
from tidings.messaging import service as messaging
from tidings.messaging.domain import Origin, Purpose
from tidings.messaging.orm import Conversation, Message
from tidings.workspaces import service as workspaces

ZONES = ("Asia/Taipei", "Asia/Bangkok", "Asia/Hong_Kong", None)
TEMPLATE = {
    "name": "winter_sale",
    "language": {"code": "zh_TW"},
    "components": [
        {"type": "body", "parameters": [{"type": "text", "field": "name", "fallback": "朋友"}]}
    ],
}


def fill(inst: Tidings, workspace_id: int, number_id: int, count: int, *, first: int = 0) -> None:
    """``count`` contacts with consents, and a promotion three days ago for one in twenty."""
    now = inst.clock.now()
    chunk = 20_000
    for start in range(first, first + count, chunk):
        numbers = range(start, min(start + chunk, first + count))
        with inst.db.transaction() as session:
            ids = (
                session.execute(
                    insert(table_of(Contact)).returning(
                        table_of(Contact).c.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "workspace_id": workspace_id,
                            "name": f"客戶 {n}",
                            "phone": f"+8869{n:08d}",
                            "timezone": ZONES[n % 4],
                            "lifecycle_stage": "customer",
                            "score": 0,
                            "custom_fields": {},
                            "do_not_contact": n % 101 == 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in numbers
                    ],
                )
                .scalars()
                .all()
            )
            consents = [
                {
                    "workspace_id": workspace_id,
                    "contact_id": contact_id,
                    "channel": "whatsapp",
                    "purpose": "marketing" if n % 10 == 0 else "transactional",
                    "status": "opted_out" if n % 10 == 0 else "opted_in",
                    "source": "bench",
                    "recorded_at": now,
                }
                for n, contact_id in zip(numbers, ids, strict=True)
                if n % 10 == 0 or n % 3 == 0
            ]
            session.execute(insert(table_of(Consent)), consents)
            recent = [(n, c) for n, c in zip(numbers, ids, strict=True) if n % 20 == 1]
            conversations = (
                session.execute(
                    insert(table_of(Conversation)).returning(
                        table_of(Conversation).c.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "workspace_id": workspace_id,
                            "contact_id": c,
                            "number_id": number_id,
                            "status": "resolved",
                            "unread_count": 0,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for _, c in recent
                    ],
                )
                .scalars()
                .all()
            )
            three_days_ago = now - timedelta(days=3)
            session.execute(
                insert(table_of(Message)),
                [
                    {
                        "workspace_id": workspace_id,
                        "conversation_id": conversation_id,
                        "contact_id": c,
                        "number_id": number_id,
                        "direction": "out",
                        "kind": "template",
                        "content": {"type": "template", "template": {"name": "autumn"}},
                        "status": "delivered",
                        "origin": "broadcast",
                        "purpose": "marketing",
                        "recipient": f"+8869{n:08d}",
                        "resend_if_uncertain": False,
                        "dispatched_at": three_days_ago,
                        "attempts": 1,
                        "created_at": three_days_ago,
                        "updated_at": three_days_ago,
                    }
                    for (n, c), conversation_id in zip(recent, conversations, strict=True)
                ],
            )
        print(f"\r  {min(start + chunk, first + count):,} contacts", end="", file=sys.stderr)
    print(file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=3_000, help="recipients, one by one")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    tune_garbage_collector()  # as every tidings process does (CLI start-up)
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    inst = fresh_installation(args.database_url or None)
    inst.clock = VirtualClock(PINNED)  # the hour decides quiet hours: never the run's own
    workspace, _ = make_workspace(inst)
    with inst.db.transaction() as session:
        fresh = workspaces.get_workspace(session, workspace.id)
        assert fresh is not None
        # One batch: with a new number's warm-up quota the send would be spread over years
        # (P6 batch mode), which is right for a shop and beside the point here.
        workspaces.update_workspace(
            session,
            workspace=fresh,
            changes={
                "policy": {"daily_quota_per_number": 10_000_000, "warmup_first_day_quota": None}
            },
            now=inst.clock.now(),
        )
        number = channels.add_number(
            session,
            workspace=fresh,
            data={
                "name": "bench",
                "phone_number_id": "100000000000001",
                "business_account_id": "200000000000001",
                "display_phone_number": "+85230001234",
                "access_token": "bench-token",
                "app_secret": "bench-app-secret",
                "verify_token": "bench-verify-token",
            },
            box=inst.secret_box,
            now=inst.clock.now(),
        )
        number_id = number.id
    fill(inst, workspace.id, number_id, args.contacts)

    created: list[broadcasts.Estimate] = []

    def create() -> None:
        with inst.db.transaction() as session:
            fresh = workspaces.get_workspace(session, workspace.id)
            assert fresh is not None
            broadcast, estimate = broadcasts.create_broadcast(
                session,
                workspace=fresh,
                data={"name": "bench", "template": TEMPLATE, "purpose": "marketing"},
                created_by="bench",
                now=inst.clock.now(),
            )
            assert broadcast is not None
            created.append(estimate)

    # The estimate decides the first recipients as planning will (its forecast): timed apart.
    creating = measure(inst, create, 1)
    forecast = created[0].forecast
    print(
        f"estimate with its forecast of {forecast.decided:,} recipients: {creating.wall:.2f} s "
        f"(CPU {creating.process_cpu:.2f} s); forecast {forecast.outcomes}"
    )
    planner = BroadcastPlanner()

    def plan() -> None:
        while True:
            with inst.db.transaction(background=True) as session:
                if planner.run_batch(session, now=inst.clock.now(), limit=500) == 0:
                    return

    planning = measure(inst, plan, args.contacts)
    with inst.db.reading() as session:
        outcomes = dict(
            session.execute(
                select(Message.status, func.count())
                .where(Message.broadcast_id.is_not(None))
                .group_by(Message.status)
            ).all()
        )
    planned = sum(outcomes.values())
    assert planned == args.contacts, (planned, args.contacts)

    # The straightforward way: one queue_message (the same policy) per recipient, in batches
    # of 500 per transaction, on contacts of their own.
    base_first = args.contacts + 1
    fill(inst, workspace.id, number_id, args.baseline, first=base_first)
    with inst.db.reading() as session:
        baseline_ids = list(
            session.scalars(select(Contact.id).order_by(Contact.id.desc()).limit(args.baseline))
        )

    def one_by_one() -> None:
        for offset in range(0, len(baseline_ids), 500):
            queue_each(baseline_ids[offset : offset + 500])

    def queue_each(contact_ids: list[int]) -> None:
        with inst.db.transaction(background=True) as session:
            fresh = workspaces.get_workspace(session, workspace.id)
            assert fresh is not None
            for contact_id in contact_ids:
                messaging.queue_message(
                    session,
                    workspace=fresh,
                    request=messaging.SendRequest(
                        contact_id=contact_id,
                        content={"type": "template", "template": TEMPLATE | {"components": []}},
                        origin=Origin.BROADCAST,
                        purpose=Purpose.MARKETING,
                        number_id=number_id,
                        idempotency_key=f"baseline:{contact_id}",
                    ),
                    now=inst.clock.now(),
                )

    baseline = measure(inst, one_by_one, len(baseline_ids))
    table = Table(
        title=f"Broadcast planning · {inst.db.engine.dialect.name} · {args.contacts:,} contacts"
        f" · clock {PINNED:%Y-%m-%d %H:%M} UTC · {machine()}"
    )
    for column in (
        "way",
        "recipients",
        "seconds",
        "recipients/s",
        "CPU µs/recipient",
        "server µs/recipient",
        "× baseline",
    ):
        table.add_column(column, justify="right")  # fmt: skip
    for name, run in (("Tidings planner", planning), ("queue_message one by one", baseline)):
        table.add_row(name, *_cells(run), f"{run.rate / baseline.rate:.1f}×")
    Console().print(table)
    Console().print(f"outcomes: {outcomes}")
    inst.close()


def _cells(run: Figures) -> list[str]:
    per = max(run.items, 1)
    return [
        f"{run.items:,}",
        f"{run.wall:.1f}",
        f"{run.rate:,.0f}",
        f"{run.process_cpu / per * 1e6:,.1f}",
        f"{run.server_cpu / per * 1e6:,.1f}",
    ]


if __name__ == "__main__":
    main()
