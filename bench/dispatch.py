"""Dispatch: N queued messages sent to the simulator (its limits lifted) by the pipeline, side by
side with the same sends made by a bare client (no database): the difference is our per-message
overhead — claim, pacing, record, trace (#3).

    python -m bench.dispatch [--messages 100000] [--database-url …] [--concurrency 32]

The simulator runs in its own process (``tidings simulator --no-limits``), without webhooks,
so the figure is the pipeline's and not the status traffic's.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from bench.common import fresh_installation, machine, make_workspace, simulated_number
from tidings.bootstrap import Tidings
from tidings.channels.whatsapp.client import CloudApiClient, NumberEndpoint
from tidings.contacts.orm import Contact
from tidings.db.base import table_of
from tidings.egress.policy import EgressPolicy
from tidings.messaging.dispatch import OutboundDispatcher
from tidings.messaging.orm import Conversation, Message
from tidings.simulator.server import SimulatorConfig

CONFIG = SimulatorConfig()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The simulator listens on loopback: the operator's permission, as TIDINGS_EGRESS_ALLOW gives.
LOCAL_SIMULATOR = EgressPolicy.of(["127.0.0.0/8"])


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tidings", "simulator", "--no-limits", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/health")
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the simulator did not start")


def fill(inst: Tidings, workspace_id: int, number_id: int, count: int) -> None:
    """``count`` contacts, each with a conversation and one queued text message."""
    now = inst.clock.now()
    chunk = 20_000
    for start in range(0, count, chunk):
        numbers = range(start, min(start + chunk, count))
        with inst.db.transaction() as session:
            contact_ids = (
                session.execute(
                    insert(table_of(Contact)).returning(
                        table_of(Contact).c.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "workspace_id": workspace_id,
                            "name": f"客戶 {n}",
                            "phone": f"+8869{n:08d}",
                            "lifecycle_stage": "customer",
                            "score": 0,
                            "custom_fields": {},
                            "do_not_contact": False,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in numbers
                    ],
                )
                .scalars()
                .all()
            )
            conversation_ids = (
                session.execute(
                    insert(table_of(Conversation)).returning(
                        table_of(Conversation).c.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "workspace_id": workspace_id,
                            "contact_id": contact_id,
                            "number_id": number_id,
                            "status": "open",
                            "unread_count": 0,
                            "last_inbound_at": now,
                            "last_message_at": now,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for contact_id in contact_ids
                    ],
                )
                .scalars()
                .all()
            )
            session.execute(
                insert(table_of(Message)),
                [
                    {
                        "workspace_id": workspace_id,
                        "conversation_id": conversation_id,
                        "contact_id": contact_id,
                        "number_id": number_id,
                        "direction": "out",
                        "kind": "text",
                        "text": "您的訂單已出貨",
                        "content": {"type": "text", "text": {"body": "您的訂單已出貨"}},
                        "status": "queued",
                        "origin": "broadcast",
                        "purpose": "utility",
                        "recipient": f"+8869{n:08d}",
                        "resend_if_uncertain": True,
                        "next_attempt_at": now,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n, contact_id, conversation_id in zip(
                        numbers, contact_ids, conversation_ids, strict=True
                    )
                ],
            )
        print(f"\r  {min(start + chunk, count):,} queued", end="", file=sys.stderr)
    print(file=sys.stderr)


def bare_sends(url: str, count: int, concurrency: int) -> float:
    """The same sends with no database: the floor our pipeline is measured against."""
    client = CloudApiClient(policy=LOCAL_SIMULATOR, max_connections=concurrency)
    endpoint = NumberEndpoint(url, "v23.0", CONFIG.phone_number_id, CONFIG.access_token)
    content = {"type": "text", "text": {"body": "您的訂單已出貨"}}
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(
            pool.map(
                lambda n: client.send_message(endpoint, f"+8869{n:08d}", content), range(count)
            )
        )
    elapsed = time.perf_counter() - started
    client.close()
    assert all(o.accepted for o in outcomes), "the simulator refused bare sends"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    simulator, url = start_simulator()
    inst = fresh_installation(args.database_url or None)
    try:
        workspace, _ = make_workspace(inst)
        # The benchmark measures our overhead, so our own limits are lifted too (P6 figures,
        # quiet hours); every rule is still evaluated for every message.
        number_id = simulated_number(
            inst,
            workspace.id,
            url,
            {
                "throughput_per_number_per_second": 1_000_000,
                "daily_quota_per_number": 10_000_000,
                "warmup_first_day_quota": None,
                "messaging_tier_limit": None,
                "quiet_hours_start": "00:00",
                "quiet_hours_end": "00:00",
            },
        )
        fill(inst, workspace.id, number_id, args.messages)
        bare = bare_sends(url, min(args.messages, 20_000), args.concurrency)
        bare_per_message = bare / min(args.messages, 20_000)
        dispatcher = OutboundDispatcher(
            box=inst.secret_box,
            client=CloudApiClient(policy=LOCAL_SIMULATOR, max_connections=args.concurrency),
            concurrency=args.concurrency,
        )
        started = time.perf_counter()
        handled = 0
        while handled < args.messages:
            count = dispatcher.run_pass(inst.db, inst.clock, args.batch)
            if count == 0:
                break
            handled += count
            print(f"\r  {handled:,} dispatched", end="", file=sys.stderr)
        elapsed = time.perf_counter() - started
        dispatcher.close()
        print(file=sys.stderr)
        with inst.db.reading() as session:
            states = dict(
                session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
            )
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    per_message = elapsed / args.messages
    table = Table(
        title=f"Dispatch of {args.messages:,} messages · {inst.db.engine.dialect.name} · "
        f"concurrency {args.concurrency} · {machine()}"
    )
    for column in ("run", "messages/s", "µs per message", "ratio"):
        table.add_column(column, justify="right")
    table.add_row(
        "bare client → simulator",
        f"{1 / bare_per_message:,.0f}",
        f"{bare_per_message * 1e6:,.0f}",
        "1.0×",
    )
    table.add_row(
        "Tidings pipeline → simulator",
        f"{1 / per_message:,.0f}",
        f"{per_message * 1e6:,.0f}",
        f"{per_message / bare_per_message:.2f}×",
    )
    Console().print(table)
    Console().print(
        f"overhead of the pipeline: {(per_message - bare_per_message) * 1e6:,.0f} µs per message; "
        f"final states: {states}"
    )
    inst.close()


if __name__ == "__main__":
    main()
