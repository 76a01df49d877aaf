"""Delivery statuses end to end after the webhook (#23, item 7; goal ≥ 5,000 statuses/s per
worker on each database).

N messages are sent (stored as ``sent``, with WhatsApp ids); WhatsApp then reports
``delivered`` and ``read`` for each, in POSTs of 50 statuses, filed as the webhook files them
(one intake row per update). The worker turns them into message states, traces and webhook
announcements. Printed: statuses per second, CPU per status — this process and the database
server's backends (PostgreSQL) — and, measured in the same run on the same rows, the floor:
the same state changes and traces written by hand-written set-based SQL (a temporary table of
the batch, one ``UPDATE … FROM`` and one ``INSERT … SELECT`` per batch), with no Python per row.

    python -m bench.status_updates [--messages 20000] [--database-url …]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from sqlalchemy import text

from bench.common import (
    PINNED,
    fresh_installation,
    machine,
    make_workspace,
    measure,
    simulated_number,
)
from tidings.bootstrap import Tidings
from tidings.channels import service as channels
from tidings.channels.jobs import InboundEventSource
from tidings.contacts.orm import Contact
from tidings.kernel.clock import VirtualClock
from tidings.messaging.orm import Message
from tidings.scheduler.worker import Worker
from tidings.simulator.server import SimulatorConfig

STATUSES_PER_POST = 50


def sent_messages(installation: Tidings, workspace_id: int, number_id: int, count: int) -> None:
    now = installation.clock.now()
    with installation.db.transaction() as session:
        people = [
            Contact(
                workspace_id=workspace_id,
                phone=f"+88691{i:07d}",
                country="TW",
                lifecycle_stage="lead",
                score=0,
                custom_fields={},
                do_not_contact=False,
                created_at=now,
                updated_at=now,
            )
            for i in range(count)
        ]
        session.add_all(people)
        session.flush()
        session.add_all(
            Message(
                workspace_id=workspace_id,
                contact_id=person.id,
                number_id=number_id,
                direction="out",
                kind="template",
                content={"type": "template"},
                status="sent",
                provider_message_id=f"wamid.bench.{i}",
                recipient=person.phone,
                origin="broadcast",
                purpose="marketing",
                attempts=1,
                sent_at=now,
                wire_at=now,
                created_at=now,
                updated_at=now,
            )
            for i, person in enumerate(people)
        )


def status_posts(count: int, at: datetime) -> list[dict[str, object]]:
    config = SimulatorConfig()
    statuses = [
        {
            "id": f"wamid.bench.{i}",
            "status": status,
            "timestamp": str(int((at + timedelta(seconds=offset)).timestamp())),
            "recipient_id": f"88691{i:07d}",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing",
                        "type": "regular"},
        }
        for status, offset in (("delivered", 1), ("read", 5))
        for i in range(count)
    ]  # fmt: skip
    return [
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
                                "statuses": statuses[start : start + STATUSES_PER_POST],
                            },
                        }
                    ],
                }
            ],
        }
        for start in range(0, len(statuses), STATUSES_PER_POST)
    ]


def file_posts(installation: Tidings, workspace_id: int, number_id: int, posts: list) -> None:  # type: ignore[type-arg]
    now = installation.clock.now()
    with installation.db.transaction() as session:
        for post in posts:
            channels.file_updates(
                session,
                workspace_id=workspace_id,
                number_id=number_id,
                received_at=now,
                payload=post,
                now=now,
            )


def reset(installation: Tidings) -> None:
    """Back to the moment before the statuses came: messages sent, intake unprocessed."""
    with installation.db.transaction() as session:
        session.execute(
            text(
                "UPDATE messages SET status = 'sent', delivered_at = NULL, read_at = NULL,"
                " cost = NULL, cost_currency = NULL, pricing_category = NULL,"
                " pricing_type = NULL WHERE direction = 'out'"
            )
        )
        session.execute(text("UPDATE whatsapp_inbound_events SET processed_at = NULL"))
        session.execute(text("DELETE FROM send_traces"))


def drain(installation: Tidings) -> None:
    # The intake source alone, without the periodic jobs (an export would be timed too).
    worker = Worker(db=installation.db, clock=installation.clock, sources=[InboundEventSource()])
    while worker.run_once():
        pass


def floor(installation: Tidings, batch: int) -> None:
    """The same rows written by set-based SQL per batch of intake rows, no Python per row."""
    postgres = installation.db.engine.dialect.name == "postgresql"
    # An intake row holds a whole webhook body with one update.
    status_of = (
        "payload->'entry'->0->'changes'->0->'value'->'statuses'->0->>'status'"
        if postgres
        else "json_extract(payload, '$.entry[0].changes[0].value.statuses[0].status')"
    )
    id_of = (
        "payload->'entry'->0->'changes'->0->'value'->'statuses'->0->>'id'"
        if postgres
        else "json_extract(payload, '$.entry[0].changes[0].value.statuses[0].id')"
    )
    now = installation.clock.now()
    while True:
        with installation.db.transaction() as session:
            ids = (
                session.execute(
                    text(
                        "SELECT id FROM whatsapp_inbound_events WHERE processed_at IS NULL"
                        " ORDER BY id LIMIT :n"
                    ),
                    {"n": batch},
                )
                .scalars()
                .all()
            )
            if not ids:
                return
            low, high = ids[0], ids[-1]
            session.execute(text("DROP TABLE IF EXISTS batch_statuses"))
            session.execute(
                text(
                    "CREATE TEMPORARY TABLE batch_statuses AS"
                    f" SELECT e.number_id, {id_of} AS wamid, max(CASE {status_of}"
                    " WHEN 'read' THEN 2 WHEN 'delivered' THEN 1 ELSE 0 END) AS rank"
                    " FROM whatsapp_inbound_events e WHERE e.id BETWEEN :low AND :high"
                    " AND e.processed_at IS NULL GROUP BY e.number_id, wamid"
                ),
                {"low": low, "high": high},
            )
            session.execute(
                text(
                    "UPDATE messages SET"
                    " status = CASE WHEN b.rank = 2 THEN 'read' ELSE 'delivered' END,"
                    " delivered_at = coalesce(messages.delivered_at, :now),"
                    " read_at = CASE WHEN b.rank = 2 THEN coalesce(messages.read_at, :now)"
                    " ELSE messages.read_at END, updated_at = :now"
                    " FROM batch_statuses b WHERE messages.number_id = b.number_id"
                    " AND messages.provider_message_id = b.wamid"
                ),
                {"now": now},
            )
            session.execute(
                text(
                    "INSERT INTO send_traces (workspace_id, message_id, contact_id, outcome,"
                    " reason, at) SELECT m.workspace_id, m.id, m.contact_id, m.status,"
                    " 'WhatsApp reported', :now FROM batch_statuses b JOIN messages m"
                    " ON m.number_id = b.number_id AND m.provider_message_id = b.wamid"
                ),
                {"now": now},
            )
            session.execute(
                text(
                    "UPDATE whatsapp_inbound_events SET processed_at = :now"
                    " WHERE id BETWEEN :low AND :high AND processed_at IS NULL"
                ),
                {"now": now, "low": low, "high": high},
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    installation = fresh_installation(args.database_url or None)
    installation.clock = VirtualClock(PINNED)
    workspace, _ = make_workspace(installation)
    number_id = simulated_number(installation, workspace.id, "http://127.0.0.1:9/", {})
    sent_messages(installation, workspace.id, number_id, args.messages)
    file_posts(installation, workspace.id, number_id, status_posts(args.messages, PINNED))
    statuses = 2 * args.messages
    database = installation.db.engine.dialect.name
    print(f"{statuses:,} statuses for {args.messages:,} messages on {database}; {machine()}")
    tidings_run = measure(installation, lambda: drain(installation), statuses)
    with installation.db.reading() as session:
        states = dict(
            session.execute(text("SELECT status, count(*) FROM messages GROUP BY status")).all()
        )
    reset(installation)
    floor_run = measure(installation, lambda: floor(installation, 500), statuses)
    with installation.db.reading() as session:
        floor_states = dict(
            session.execute(text("SELECT status, count(*) FROM messages GROUP BY status")).all()
        )
    # The floor counts only if it wrote what Tidings wrote.
    assert floor_states == states, (floor_states, states)
    print(tidings_run.line("Tidings (InboundEventSource)", "status"))
    print(floor_run.line("floor (set-based SQL, no Python)", "status"))
    print(f"Tidings is {tidings_run.wall / floor_run.wall:.1f}× the floor's time; states {states}")
    installation.close()


if __name__ == "__main__":
    main()
