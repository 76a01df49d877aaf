"""Customers' messages end to end after the webhook (#23, item 7; goal ≥ 1,000 new inbound
messages/s per worker on each database).

N messages arrive, filed as the webhook files them (one intake row per update, 50 to a POST):
four in five from people who never wrote before, the rest a second message from one of them.
The worker's intake source turns them into contacts (with their WhatsApp ids and names),
conversations, messages and timeline events, with the clock pinned. Printed, for the same rows
in the same run:

- Tidings: the worker as it runs (batches taken together, ``channels.inbound``);
- before: the same worker taking every message one by one (``record_inbound_message``), the
  path all messages took before, on the first ``--baseline`` messages;
- the floor: the same rows written by hand-written set-based SQL, a temporary table per batch
  of 500 and one ``INSERT … SELECT`` per table, no Python per row;
- on PostgreSQL, Tidings again with foreign-key triggers off (``session_replication_role``):
  what the schema's integrity checks cost, measured, not guessed.

Each line gives messages per second and CPU per message: this process, plus the PostgreSQL
backends serving the benchmark's database.

    python -m bench.inbound_messages [--messages 20000] [--baseline 2000] [--database-url …]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, text

from bench.common import (
    PINNED,
    Figures,
    fresh_installation,
    machine,
    make_workspace,
    measure,
    simulated_number,
)
from bench.status_updates import file_posts
from tidings.bootstrap import Tidings
from tidings.channels import inbound
from tidings.channels import jobs as channel_jobs
from tidings.channels.jobs import InboundEventSource
from tidings.kernel.clock import VirtualClock
from tidings.scheduler.worker import Worker
from tidings.simulator.server import SimulatorConfig

MESSAGES_PER_POST = 50
WRITTEN = ("contacts", "contact_external_ids", "conversations", "messages", "contact_events")


def sender_of(n: int, messages: int) -> int:
    """Four in five messages come from a new person; the rest from one who wrote before."""
    first_time = messages - messages // 5
    return n if n < first_time else n - first_time


def posts(messages: int, at: datetime) -> list[dict[str, Any]]:
    config = SimulatorConfig()
    names = ["王小明", "Somchai Jaidee", "陳美玲", "Nattaya Srisuk", "林志豪"]
    out = []
    for start in range(0, messages, MESSAGES_PER_POST):
        numbers = range(start, min(start + MESSAGES_PER_POST, messages))
        people = {sender_of(n, messages) for n in numbers}
        out.append(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": config.business_account_id,
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": config.display_phone_number,
                                        "phone_number_id": config.phone_number_id,
                                    },
                                    "contacts": [
                                        {
                                            "profile": {"name": names[p % len(names)]},
                                            "wa_id": f"8869{p:08d}",
                                        }
                                        for p in sorted(people)
                                    ],
                                    "messages": [
                                        {
                                            "from": f"8869{sender_of(n, messages):08d}",
                                            "id": f"wamid.in.{n}",
                                            "timestamp": str(
                                                int((at - timedelta(seconds=60)).timestamp())
                                            ),
                                            "type": "text",
                                            "text": {"body": "請問這件還有 M 號嗎？"},
                                        }
                                        for n in numbers
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        )
    return out


def drain(installation: Tidings) -> None:
    worker = Worker(db=installation.db, clock=installation.clock, sources=[InboundEventSource()])
    while worker.run_once():
        pass


def one_by_one(installation: Tidings) -> None:
    """The worker with the batch path declining every message: each goes the reference way."""

    def decline(*_: Any, **kwargs: Any) -> inbound.BatchRecorded:
        return inbound.BatchRecorded(left=[item.key for item in kwargs["received"]])

    real = channel_jobs.record_inbound_messages
    channel_jobs.record_inbound_messages = decline  # type: ignore[assignment]
    try:
        drain(installation)
    finally:
        channel_jobs.record_inbound_messages = real


def written(installation: Tidings) -> dict[str, int]:
    with installation.db.reading() as session:
        return {
            t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in WRITTEN
        }


def reset(installation: Tidings, *, keep_first: int | None = None) -> None:
    """Back to the moment the messages came (``keep_first``: only that many unprocessed),
    with the tables as compact as at the start: each run starts on the same footing, not on
    the dead rows of the runs before it (PostgreSQL keeps them until a vacuum)."""
    postgres = installation.db.engine.dialect.name == "postgresql"
    with installation.db.transaction() as session:
        if postgres:
            session.execute(text(f"TRUNCATE {', '.join(WRITTEN)} CASCADE"))
        else:
            for table in ("messages", "conversations", "contact_events", "contact_external_ids"):
                session.execute(text(f"DELETE FROM {table}"))
            session.execute(text("DELETE FROM contacts"))
        session.execute(text("UPDATE whatsapp_inbound_events SET processed_at = NULL"))
        if keep_first is not None:
            session.execute(
                text(
                    "UPDATE whatsapp_inbound_events SET processed_at = received_at WHERE id > "
                    "(SELECT min(id) FROM whatsapp_inbound_events) + :n - 1"
                ),
                {"n": keep_first},
            )
    if postgres:
        with installation.db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE whatsapp_inbound_events"
            )


def floor(installation: Tidings, workspace_id: int, batch: int) -> None:
    """The same rows by set-based SQL, per batch of intake rows, no Python per row."""
    postgres = installation.db.engine.dialect.name == "postgresql"

    def path(*keys: str, last: str) -> str:
        if postgres:
            inner = "->".join(f"'{k}'" if not k.isdigit() else k for k in keys)
            return f"payload->{inner}->>'{last}'"
        dotted = "".join(f"[{k}]" if k.isdigit() else f".{k}" for k in keys)
        return f"json_extract(payload, '${dotted}.{last}')"

    value = ("entry", "0", "changes", "0", "value")
    now = installation.clock.now()
    stamp = "CAST(:now AS TIMESTAMP WITH TIME ZONE)" if postgres else ":now"
    props = (
        "json_build_object('wamid', b.wamid, 'type', 'text', 'text', b.body)"
        if postgres
        else "json_object('wamid', b.wamid, 'type', 'text', 'text', b.body)"
    )
    created = (
        "json_build_object('source', 'whatsapp')"
        if postgres
        else "json_object('source', 'whatsapp')"
    )
    steps = [
        "DROP TABLE IF EXISTS batch_in",
        "DROP TABLE IF EXISTS batch_of",
        "CREATE TEMPORARY TABLE batch_in AS SELECT e.id AS event_id, e.number_id,"
        f" {path(*value, 'messages', '0', last='from')} AS wa_id,"
        f" '+' || ({path(*value, 'messages', '0', last='from')}) AS phone,"
        f" {path(*value, 'messages', '0', last='id')} AS wamid,"
        f" {path(*value, 'messages', '0', 'text', last='body')} AS body,"
        f" {path(*value, 'contacts', '0', 'profile', last='name')} AS profile"
        " FROM whatsapp_inbound_events e WHERE e.id IN (SELECT id FROM"
        " whatsapp_inbound_events WHERE processed_at IS NULL ORDER BY id LIMIT :n)",
        # New people: one contact each, with its WhatsApp id and creation event.
        "INSERT INTO contacts (workspace_id, name, phone, country, lifecycle_stage, score,"
        " custom_fields, lead_source, do_not_contact, activity_score, churn_risk, created_at,"
        f" updated_at) SELECT :ws, min(b.profile), b.phone, 'TW', 'lead', 0, '{{}}',"
        f" 'whatsapp', false, 0, false, {stamp}, {stamp} FROM batch_in b WHERE NOT EXISTS"
        " (SELECT 1 FROM contacts c WHERE c.workspace_id = :ws AND c.phone = b.phone)"
        " GROUP BY b.phone",
        "CREATE TEMPORARY TABLE batch_of AS SELECT b.*, c.id AS contact_id,"
        " NOT EXISTS (SELECT 1 FROM contact_external_ids x WHERE x.contact_id = c.id) AS is_new"
        " FROM batch_in b JOIN contacts c"
        " ON c.workspace_id = :ws AND c.phone = b.phone",
        "INSERT INTO contact_external_ids (workspace_id, contact_id, system, external_id)"
        " SELECT DISTINCT :ws, contact_id, 'whatsapp', wa_id FROM batch_of WHERE is_new",
        "INSERT INTO contact_events (workspace_id, contact_id, event_type, occurred_at,"
        " received_at, source, properties, depth) SELECT :ws, contact_id,"
        f" 'contact.created', {stamp}, {stamp}, 'whatsapp', {created}, 0 FROM"
        " (SELECT DISTINCT contact_id FROM batch_of WHERE is_new) AS n",
        # Conversations: opened for new people, counted for all.
        "INSERT INTO conversations (workspace_id, number_id, contact_id, status, unread_count,"
        f" created_at, updated_at) SELECT DISTINCT :ws, number_id, contact_id, 'open', 0,"
        f" {stamp}, {stamp} FROM batch_of WHERE is_new",
        "UPDATE conversations SET unread_count = conversations.unread_count + n.k,"
        f" last_inbound_at = {stamp}, last_message_at = {stamp}, updated_at = {stamp}"
        " FROM (SELECT number_id, contact_id, count(*) AS k FROM batch_of"
        " GROUP BY number_id, contact_id) AS n WHERE conversations.number_id = n.number_id"
        " AND conversations.contact_id = n.contact_id",
        "INSERT INTO messages (workspace_id, channel, conversation_id, contact_id, number_id,"
        " direction, kind, text, content, status, provider_message_id, resend_if_uncertain,"
        " attempts, created_at, updated_at) SELECT :ws, 'whatsapp', v.id, b.contact_id,"
        f" b.number_id, 'in', 'text', b.body, '{{}}', 'received', b.wamid, false, 0, {stamp},"
        f" {stamp} FROM batch_of b JOIN conversations v ON v.number_id = b.number_id"
        " AND v.contact_id = b.contact_id",
        "INSERT INTO contact_events (workspace_id, contact_id, event_type, occurred_at,"
        f" received_at, source, properties, idempotency_key, depth) SELECT :ws, b.contact_id,"
        f" 'message.received', {stamp}, {stamp}, 'whatsapp', {props},"
        " 'whatsapp:' || b.wamid, 0 FROM batch_of b",
        f"UPDATE whatsapp_inbound_events SET processed_at = {stamp}"
        " WHERE id IN (SELECT event_id FROM batch_in)",
    ]
    while True:
        with installation.db.transaction() as session:
            left = session.execute(
                text("SELECT count(*) FROM whatsapp_inbound_events WHERE processed_at IS NULL")
            ).scalar_one()
            if not left:
                return
            for step in steps:
                session.execute(text(step), {"n": batch, "ws": workspace_id, "now": now})


def without_foreign_keys(installation: Tidings) -> Callable[[], None]:
    """Turn off PostgreSQL's foreign-key triggers on the benchmark's new connections; the
    returned function turns them back on."""

    def replica(connection: Any, _: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        connection.commit()

    engine = installation.db.engine
    engine.dispose()
    event.listen(engine, "connect", replica)

    def restore() -> None:
        event.remove(engine, "connect", replica)
        engine.dispose()

    return restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    args = parser.parse_args()
    installation = fresh_installation(args.database_url or None)
    installation.clock = VirtualClock(PINNED)
    workspace, _ = make_workspace(installation)
    number_id = simulated_number(installation, workspace.id, "http://127.0.0.1:9/", {})
    file_posts(installation, workspace.id, number_id, posts(args.messages, PINNED))
    database = installation.db.engine.dialect.name
    print(f"{args.messages:,} inbound messages on {database}; {machine()}")

    def shown(name: str, figures: Figures) -> Figures:
        print(figures.line(name, "message"), flush=True)
        return figures

    tidings_run = shown(
        "Tidings (taken together)",
        measure(installation, lambda: drain(installation), args.messages),
    )
    expected = written(installation)
    baseline = min(args.baseline, args.messages)
    reset(installation, keep_first=baseline)
    before = shown(
        "before (one by one)", measure(installation, lambda: one_by_one(installation), baseline)
    )
    reset(installation)
    floor_run = shown(
        "floor (set-based SQL, no Python)",
        measure(installation, lambda: floor(installation, workspace.id, 500), args.messages),
    )
    floor_rows = written(installation)
    # The floor counts only if it wrote as many rows as Tidings did, table by table.
    assert floor_rows == expected, (floor_rows, expected)
    if database == "postgresql":
        reset(installation)
        restore = without_foreign_keys(installation)
        try:
            shown(
                "Tidings, foreign-key triggers off",
                measure(installation, lambda: drain(installation), args.messages),
            )
        finally:
            restore()
    print(f"rows written: {expected}")
    print(
        f"Tidings is {tidings_run.wall / floor_run.wall:.1f}× the floor's time;"
        f" {tidings_run.rate / before.rate:.1f}× faster than one by one"
    )
    installation.close()


if __name__ == "__main__":
    main()
