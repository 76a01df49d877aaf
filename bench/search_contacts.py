"""Contact search by phone and by tag over 1,000,000 contacts: p50/p99 through the API (#2).

The contacts are written straight into the tables (this measures search, not import). Side by
side: the same queries run directly on the database, the floor an API cannot beat.

    python -m bench.search_contacts [--contacts 1000000] [--requests 400] [--database-url …]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, select

from bench.common import fresh_installation, machine, make_workspace, percentile
from tidings.contacts.orm import Contact, ContactTag, Tag
from tidings.db.base import table_of

TAGS = [f"tag-{n}" for n in range(50)]


def fill(inst, workspace_id: int, count: int) -> None:  # type: ignore[no-untyped-def]
    now = inst.clock.now()
    with inst.db.transaction() as session:
        session.execute(
            insert(table_of(Tag)),
            [{"workspace_id": workspace_id, "name": t, "key": t, "created_at": now} for t in TAGS],
        )
        tag_ids = list(session.scalars(select(Tag.id).order_by(Tag.id)))
    chunk = 50_000
    for start in range(0, count, chunk):
        rows = [
            {
                "workspace_id": workspace_id,
                "name": f"客戶 {n}",
                "phone": f"+8869{n:08d}",
                "email": f"c{n}@shop.com.tw",
                "lifecycle_stage": "lead",
                "score": n % 100,
                "custom_fields": {},
                "do_not_contact": False,
                "created_at": now,
                "updated_at": now,
                "country": "TW",
            }
            for n in range(start, min(start + chunk, count))
        ]
        with inst.db.transaction() as session:
            ids = (
                session.execute(
                    insert(table_of(Contact)).returning(
                        table_of(Contact).c.id, sort_by_parameter_order=True
                    ),
                    rows,
                )
                .scalars()
                .all()
            )
            session.execute(
                insert(table_of(ContactTag)),
                [
                    {"contact_id": cid, "tag_id": tag_ids[cid % len(tag_ids)], "created_at": now}
                    for cid in ids
                ],
            )
        print(f"\r  {min(start + chunk, count):,} contacts", end="", file=sys.stderr)
    print(file=sys.stderr)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    inst = fresh_installation(args.database_url or None)
    workspace, key = make_workspace(inst)
    fill(inst, workspace.id, args.contacts)
    if inst.db.engine.dialect.name == "postgresql":
        with inst.db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    url = inst.db.engine.url.render_as_string(hide_password=False)
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_DATABASE_URL": url,
        "TIDINGS_SECRET_KEY": "bench-secret-0123456789",
        "TIDINGS_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "tidings", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rng = random.Random(1)
    try:
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        for _ in range(300):
            try:
                client.get("/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        results = []
        queries = {
            "by phone": lambda: {"phone": f"09{rng.randrange(args.contacts):08d}"},
            "by tag (first page of 50)": lambda: {"tag": rng.choice(TAGS), "limit": 50},
        }
        for label, params in queries.items():
            api = timed(
                lambda p=params: client.get("/api/v1/contacts", params=p()).raise_for_status(),
                args.requests,
            )
            floor = timed(lambda p=params: direct(inst, workspace.id, p()), args.requests)
            results.append((label, api, floor))
    finally:
        server.terminate()
        server.wait(timeout=30)
    console = Console()
    table = Table(
        title=f"Search, {args.contacts:,} contacts · {inst.db.engine.dialect.name} · {machine()}"
    )
    for column in (
        "query",
        "API p50 ms",
        "API p99 ms",
        "DB-only p50 ms",
        "DB-only p99 ms",
        "API / DB p50",
    ):
        table.add_column(column, justify="right")
    for label, api, floor in results:
        table.add_row(
            label,
            f"{percentile(api, 50):.2f}",
            f"{percentile(api, 99):.2f}",
            f"{percentile(floor, 50):.2f}",
            f"{percentile(floor, 99):.2f}",
            f"{percentile(api, 50) / percentile(floor, 50):.1f}×",
        )
    console.print(table)
    inst.close()


def direct(inst, workspace_id: int, params: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """The bare query: what the database needs for the same answer."""
    with inst.db.reading() as session:
        query = select(Contact.id, Contact.name, Contact.phone).where(
            Contact.workspace_id == workspace_id
        )
        if "phone" in params:
            query = query.where(Contact.phone == "+886" + str(params["phone"])[1:])
        else:
            query = query.where(
                Contact.id.in_(
                    select(ContactTag.contact_id)
                    .join(Tag, Tag.id == ContactTag.tag_id)
                    .where(Tag.key == params["tag"])
                )
            )
        session.execute(query.order_by(Contact.id.desc()).limit(50)).all()


def timed(action, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


if __name__ == "__main__":
    main()
