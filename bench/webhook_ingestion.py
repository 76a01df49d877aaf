"""Webhook ingestion: signed POSTs over loopback (batches of 1 and of 100 messages) against
``tidings serve``, side by side with a bare endpoint on the same stack (FastAPI + uvicorn) that
only verifies the signature and answers 200 (#3; target ≥ 50% of the bare throughput).

    python -m bench.webhook_ingestion [--requests 3000] [--database-url …] [--concurrency 16]

Each message has its own id, so every one is stored (no duplicate short-cut). After the load,
the time the embedded worker needs to turn the backlog into contacts and conversations is
reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.common import fresh_installation, machine, make_workspace, percentile
from tidings.channels import service as channels
from tidings.channels.orm import WhatsAppInboundEvent, WhatsAppWebhookDelivery
from tidings.channels.whatsapp.webhook import sign
from tidings.workspaces import service as workspaces

APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def body(batch: int, first: int) -> bytes:
    messages = [
        {
            "from": f"8869{(first + n) % 10_000_000:08d}",
            "id": f"wamid.BENCH{first + n:012d}",
            "timestamp": "1795413600",
            "type": "text",
            "text": {"body": "請問運費多少？"},
        }
        for n in range(batch)
    ]
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "85230001234",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "contacts": [
                                {"profile": {"name": f"客戶 {first + n}"}, "wa_id": m["from"]}
                                for n, m in enumerate(messages)
                            ],
                            "messages": messages,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, ensure_ascii=False).encode()


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one() -> None:
            while not queue.empty():
                raw = queue.get_nowait()
                started = time.perf_counter()
                answer = await client.post(
                    url,
                    content=raw,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": sign(APP_SECRET, raw),
                    },
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{url} answered {answer.status_code}: {answer.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="single-message POSTs")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--worker",
        choices=["embedded", "process", "none"],
        default="embedded",
        help="the worker inside serve (default), as a separate `tidings worker`, or none",
    )
    args = parser.parse_args()
    # The server processes must open the secrets this process seals: one key for all.
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    inst = fresh_installation(args.database_url or None)
    workspace, _ = make_workspace(inst)
    with inst.db.transaction() as session:
        fresh = workspaces.get_workspace(session, workspace.id)
        assert fresh is not None
        number = channels.add_number(
            session,
            workspace=fresh,
            data={
                "name": "bench",
                "phone_number_id": PHONE_NUMBER_ID,
                "business_account_id": "102290129340398",
                "display_phone_number": "+85230001234",
                "access_token": "bench-token",
                "app_secret": APP_SECRET,
                "verify_token": "bench-verify-token",
            },
            box=inst.secret_box,
            now=inst.clock.now(),
        )
        path = channels.webhook_path(number)
    url = inst.db.engine.url.render_as_string(hide_password=False)
    env = {
        **os.environ,
        "TIDINGS_DATABASE_URL": url,
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    tidings_port, bare_port = free_port(), free_port()
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings",
                "serve",
                "--port",
                str(tidings_port),
                *(["--no-worker"] if args.worker != "embedded" else []),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "w"),  # noqa: SIM115
        ),
        subprocess.Popen(
            [sys.executable, "-m", "bench.bare_webhook", str(bare_port), APP_SECRET],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    if args.worker == "process":
        servers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tidings", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    results: list[tuple[str, str, float, list[float], int]] = []
    try:
        wait_until_up(f"http://127.0.0.1:{tidings_port}/health")
        wait_until_up(f"http://127.0.0.1:{bare_port}/health")
        first = 0
        cases = [
            ("1 message per POST", 1, args.requests),
            ("100 per POST", 100, max(1, args.requests // 30)),
        ]
        for label, size, count in cases:
            for server, port, target in (
                ("bare endpoint", bare_port, "/bare"),
                ("tidings serve", tidings_port, path),
            ):
                bodies = [body(size, first + n * size) for n in range(count)]
                first += size * count
                elapsed, latencies = asyncio.run(
                    load(f"http://127.0.0.1:{port}{target}", bodies, args.concurrency)
                )
                results.append((label, server, elapsed, latencies, size * count))
        drained = (0, 0.0) if args.worker == "none" else drain_time(inst)
    finally:
        for server_process in servers:
            server_process.terminate()
            server_process.wait(timeout=30)
    report(results, inst.db.engine.dialect.name, args.concurrency, drained, args.worker)
    inst.close()


def drain_time(inst: Any) -> tuple[int, float]:
    """How long the worker still needs after the load ended to split every kept POST and
    turn every update into contacts, conversations and timeline entries."""
    started = time.perf_counter()
    while True:
        with inst.db.reading() as session:
            unsplit = session.scalar(
                select(func.count()).where(WhatsAppWebhookDelivery.split_at.is_(None))
            )
            pending = session.scalar(
                select(func.count()).where(WhatsAppInboundEvent.processed_at.is_(None))
            )
            total = session.scalar(select(func.count()).select_from(WhatsAppInboundEvent))
        if not (unsplit or pending) or time.perf_counter() - started > 900:
            return int(total or 0), time.perf_counter() - started
        time.sleep(0.5)


def report(
    results: list[tuple[str, str, float, list[float], int]],
    dialect: str,
    concurrency: int,
    drained: tuple[int, float],
    worker: str,
) -> None:
    table = Table(
        title=f"Webhook ingestion · {dialect} · worker: {worker} · {concurrency} connections · "
        f"{machine()}"
    )
    for column in ("batch", "server", "messages/s", "p50 ms", "p99 ms", "vs bare"):
        table.add_column(column, justify="right")
    bare: dict[str, float] = {}
    for label, server, elapsed, latencies, messages in results:
        rate = messages / elapsed
        if server == "bare endpoint":
            bare[label] = rate
        table.add_row(
            label,
            server,
            f"{rate:,.0f}",
            f"{percentile(latencies, 50):.1f}",
            f"{percentile(latencies, 99):.1f}",
            f"{rate / bare[label]:.0%}",
        )
    Console().print(table)
    total, seconds = drained
    Console().print(
        f"{total:,} stored updates; the worker finished the backlog {seconds:.1f} s "
        "after the load ended"
    )


if __name__ == "__main__":
    main()
