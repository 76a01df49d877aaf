"""Webhook fan-out (#9, X1): timeline events into deliveries, and deliveries/s posted to a
local receiver, side by side with the same posts made one delivery per claim, one at a time.

    python -m bench.webhook_fanout [--events 20000] [--subscriptions 4] [--baseline 1000]
                                   [--database-url …]

The receiver is a minimal HTTP/1.1 server (asyncio, keep-alive) in its own process that
answers 200 at once, so what is measured is Tidings' side: claim, sign, post, record.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from bench.common import fresh_installation, machine, make_workspace
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.contacts.orm import Contact, ContactEvent
from tidings.db.base import table_of
from tidings.egress.policy import EgressPolicy
from tidings.webhooks import service
from tidings.webhooks.adapter import Courier
from tidings.webhooks.jobs import WebhookDispatcher, WebhookFanout
from tidings.webhooks.orm import WebhookDelivery
from tidings.workspaces import service as workspaces

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError):
        writer.close()


def _serve(port_out: Any) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_answer, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_receiver() -> tuple[multiprocessing.Process, str]:
    ports: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ports.get(timeout=10)}/hook"


def prepare(inst: Tidings, url: str, *, events: int, subscriptions: int, slug: str) -> int:
    """A workspace allowed to reach loopback, its subscriptions to every event, and ``events``
    contacts each created with a ``contact.created`` event on the timeline."""
    workspace, _ = make_workspace(inst)
    now = inst.clock.now()
    with inst.db.transaction() as session:
        chosen = workspaces.get_workspace(session, workspace.id)
        assert chosen is not None
        chosen.slug = slug
        workspaces.allow_private_webhooks(session, chosen, allow=True, now=now)
        for n in range(subscriptions):
            service.create_subscription(
                session,
                workspace=chosen,
                box=inst.secret_box,
                data={"url": f"{url}/{n}", "events": ["*"]},
                origin="api",
                now=now,
            )
    with inst.db.transaction() as session:  # the fan-out has been running: it reads what follows
        WebhookFanout().run_batch(session, now=now, limit=1)
    with inst.db.transaction() as session:
        first = int(session.scalar(select(func.coalesce(func.max(Contact.id), 0))) or 0) + 1
        session.execute(
            insert(table_of(Contact)),
            [
                {
                    "workspace_id": workspace.id,
                    "phone": f"+6681{n:07d}",
                    "name": f"Customer {n}",
                    "lifecycle_stage": "lead",
                    "score": 0,
                    "custom_fields": {},
                    "do_not_contact": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(events)
            ],
        )
        session.execute(
            insert(table_of(ContactEvent)),
            [
                {
                    "workspace_id": workspace.id,
                    "contact_id": first + n,
                    "event_type": "contact.created",
                    "occurred_at": now,
                    "received_at": now,
                    "source": "bench",
                    "properties": {"source": "bench"},
                    "depth": 0,
                }
                for n in range(events)
            ],
        )
    return workspace.id


def fan_out(inst: Tidings) -> float:
    source = WebhookFanout()
    if inst.db.engine.dialect.name == "postgresql":
        time.sleep(2.1)  # the feed reads events two seconds old (ids commit out of order)
    started = time.perf_counter()
    while True:
        with inst.db.transaction(background=True) as session:
            if source.run_batch(session, now=inst.clock.now(), limit=1000) == 0:
                break
    return time.perf_counter() - started


def dispatch(inst: Tidings, *, limit: int, concurrency: int) -> tuple[float, int]:
    dispatcher = WebhookDispatcher(
        box=inst.secret_box,
        courier=Courier(policy=EgressPolicy(allow_private=True), concurrency=concurrency),
    )
    started = time.perf_counter()
    sent = 0
    while (taken := dispatcher.run_pass(inst.db, inst.clock, limit)) > 0:
        sent += taken
    dispatcher.close()
    return time.perf_counter() - started, sent


def delivered(inst: Tidings) -> int:
    with inst.db.reading() as session:
        return int(
            session.scalar(select(func.count()).where(WebhookDelivery.state == "delivered")) or 0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--database-url", default=os.environ.get("TIDINGS_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    tune_garbage_collector()
    console = Console()
    receiver, url = start_receiver()
    rows = []
    for label, events, limit, concurrency in (
        ("batches of 500, 16 at a time", args.events, 500, 16),
        ("one delivery per claim, one at a time", args.baseline, 1, 1),
    ):
        inst = fresh_installation(args.database_url)
        prepare(inst, url, events=events, subscriptions=args.subscriptions, slug="bench")
        fanned = fan_out(inst)
        seconds, sent = dispatch(inst, limit=limit, concurrency=concurrency)
        assert delivered(inst) == sent == events * args.subscriptions, (delivered(inst), sent)
        rows.append((label, events, sent, fanned, seconds))
        dialect = inst.db.engine.dialect.name
        inst.close()
    receiver.terminate()
    table = Table(
        title=f"Webhooks: {args.subscriptions} subscriptions to every event, local receiver"
    )
    for name in ("way", "events", "deliveries", "fan-out/s", "posted/s"):
        table.add_column(name, justify="left" if name == "way" else "right")
    for label, events, sent, fanned, seconds in rows:
        table.add_row(
            label, f"{events:,}", f"{sent:,}", f"{sent / fanned:,.0f}", f"{sent / seconds:,.0f}"
        )
    console.print(table)
    fast, slow = rows[0][2] / rows[0][4], rows[1][2] / rows[1][4]
    console.print(f"× {fast / slow:.1f} · {dialect} · {machine()}")


if __name__ == "__main__":
    main()
