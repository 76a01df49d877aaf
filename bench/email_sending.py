"""E-mail (#7): rendering and queueing personalised e-mails, then delivering them over SMTP.

    python -m bench.email_sending [--contacts 100000] [--baseline 2000]
                                  [--deliver 4000] [--connections 1,4,16]
                                  [--database-url postgresql://…]

1. Queueing: N contacts enrolled in a sequence whose first step is a personalised e-mail
   (subject and HTML with the contact's name and a custom field, three links, a conditional
   block; the text part derived from the HTML), decided by the sending policy and the bounce
   list and written to the outbox by ``SequenceRunner`` in batches of 500 — side by side with
   the API's way, ``queue_email`` once per transaction.
2. Delivery: ``--deliver`` of those e-mails composed (tracked links, open pixel, unsubscribe
   link and headers) and sent by the e-mail dispatcher through K kept SMTP connections to a
   local server (aiosmtpd's ``Sink`` in its own process) — side by side with a bare
   ``smtplib`` client pushing already-built messages of the same size through the same K
   connections, the near-limit reference.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select, update

from bench.common import fresh_installation, machine, make_workspace
from bench.sequence_steps import timed_run
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.contacts.orm import Consent, Contact
from tidings.db.base import table_of
from tidings.mailing import service as mailing
from tidings.mailing.orm import EmailSender
from tidings.messaging.email import EmailRequest, queue_email
from tidings.messaging.email_dispatch import EmailDispatcher
from tidings.messaging.orm import Message
from tidings.sequences import service as sequences
from tidings.sequences.orm import Enrollment
from tidings.workspaces import service as workspaces

SUBJECT = "{{ contact.first_name }}，{{ level_label }}會員的冬季茶單"
BODY = """
<h1>{{ contact.first_name }}，您好</h1>
<p>冬天到了，為您準備了今年的<b>阿里山高山茶</b>與<b>東方美人</b>。</p>
{% if contact.fields.level == "gold" %}<p>金卡會員另享 9 折，結帳時自動折抵。</p>
{% else %}<p>消費滿 NT$1,500 即升級金卡。</p>{% endif %}
<p><a href="https://teahouse.example/winter?level={{ contact.fields.level }}">看冬季茶單</a> ·
<a href="https://teahouse.example/stores">門市地圖</a> ·
<a href="https://teahouse.example/gift">送禮提案</a></p>
<p>茶行 Tea House · 台北市大安區</p>
"""
DEFINITION = {
    "name": "Winter mail",
    "steps": [
        {
            "id": "winter",
            "type": "send_email",
            "purpose": "marketing",
            "subject": SUBJECT.replace("{{ level_label }}", "{{ contact.fields.level }}"),
            "body": BODY,
            "next": "later",
        },
        {"id": "later", "type": "wait", "duration": "2d"},
    ],
    "settings": {"window": {"start": "00:00", "end": "23:59"}},
}


def fill(inst: Tidings, workspace_id: int, count: int) -> list[int]:
    """``count`` contacts with an address; one in ten opted out of e-mail marketing."""
    now = inst.clock.now()
    ids: list[int] = []
    for start in range(0, count, 20_000):
        numbers = range(start, min(start + 20_000, count))
        with inst.db.transaction() as session:
            chunk = (
                session.execute(
                    insert(table_of(Contact)).returning(
                        table_of(Contact).c.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "workspace_id": workspace_id,
                            "name": f"客戶 {n}",
                            "first_name": f"怡君{n % 97}",
                            "email": f"customer{n}@mail.example",
                            "timezone": "Asia/Taipei",
                            "lifecycle_stage": "customer",
                            "score": 0,
                            "custom_fields": {"level": "gold" if n % 3 == 0 else "silver"},
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
            session.execute(
                insert(table_of(Consent)),
                [
                    {
                        "workspace_id": workspace_id,
                        "contact_id": contact_id,
                        "channel": "email",
                        "purpose": "marketing",
                        "status": "opted_out" if n % 10 == 0 else "opted_in",
                        "source": "bench",
                        "recorded_at": now,
                    }
                    for n, contact_id in zip(numbers, chunk, strict=True)
                ],
            )
        ids.extend(chunk)
    return ids


def enroll(inst: Tidings, workspace_id: int, contact_ids: list[int]) -> None:
    with inst.db.transaction() as session:
        workspace = workspaces.get_workspace(session, workspace_id)
        assert workspace is not None
        sequence = sequences.find_sequence(session, workspace, DEFINITION["name"])  # type: ignore[arg-type]
        assert sequence is not None
        version_id = sequences.get_version(session, sequence).id
        sequence_id = sequence.id
    now = inst.clock.now()
    for start in range(0, len(contact_ids), 50_000):
        with inst.db.transaction() as session:
            session.execute(
                insert(table_of(Enrollment)),
                [
                    {
                        "workspace_id": workspace_id,
                        "sequence_id": sequence_id,
                        "version_id": version_id,
                        "contact_id": contact_id,
                        "status": "active",
                        "step_id": "winter",
                        "arrived_at": now,
                        "due_at": now,
                        "visit": 0,
                        "reached_goals": "",
                        "source": "bench",
                        "enrolled_at": now,
                        "updated_at": now,
                    }
                    for contact_id in contact_ids[start : start + 50_000]
                ],
            )


def queue_one_by_one(inst: Tidings, workspace_id: int, contact_ids: list[int]) -> float:
    """The API's way: render, decide and queue one e-mail per transaction."""
    subject = SUBJECT.replace("{{ level_label }}", "{{ contact.fields.level }}")
    started = time.perf_counter()
    for contact_id in contact_ids:
        with inst.db.transaction() as session:
            workspace = workspaces.get_workspace(session, workspace_id)
            assert workspace is not None
            queue_email(
                session,
                workspace=workspace,
                request=EmailRequest(contact_id=contact_id, subject=subject, html=BODY),
                now=inst.clock.now(),
            )
    return time.perf_counter() - started


# --- delivery -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def sink_server() -> Iterator[int]:
    """aiosmtpd's Sink (accepts and drops every message) in a process of its own, so the
    server does not share our interpreter's lock."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def deliver_ours(inst: Tidings, message_ids: list[int], connections: int) -> float:
    """Make ``message_ids`` due and let the dispatcher drain them with K connections."""
    with inst.db.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.id.in_(message_ids))
            .values(next_attempt_at=inst.clock.now())
        )
        session.execute(update(EmailSender).values(connections=connections))
    dispatcher = EmailDispatcher(
        box=inst.secret_box,
        pool=inst.smtp,
        secret_key=inst.settings.secret_key.get_secret_value(),
        public_url="https://tidings.example",
        concurrency=connections,
    )
    started = time.perf_counter()
    while dispatcher.run_pass(inst.db, inst.clock, 500):
        pass
    elapsed = time.perf_counter() - started
    dispatcher.close()
    with inst.db.reading() as session:
        sent = session.scalar(
            select(func.count()).where(Message.id.in_(message_ids), Message.status == "sent")
        )
    assert sent == len(message_ids), f"{sent} of {len(message_ids)} sent"
    return elapsed


def deliver_bare(port: int, count: int, connections: int, size: int) -> float:
    """smtplib with K threads, each on one kept connection, sending built messages."""
    import smtplib

    message = EmailMessage()
    message["From"] = "news@teahouse.example"
    message["To"] = "customer@mail.example"
    message["Subject"] = "冬季茶單"
    message.set_content("x" * max(size - 400, 100))
    data = message.as_bytes()
    shares = [
        count // connections + (1 if k < count % connections else 0) for k in range(connections)
    ]

    def push(share: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            for n in range(share):
                client.sendmail("bounce@teahouse.example", [f"customer{n}@mail.example"], data)

    threads = [threading.Thread(target=push, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000, help="e-mails, one per transaction")
    parser.add_argument("--deliver", type=int, default=4_000, help="e-mails per delivery run")
    parser.add_argument("--connections", default="1,4,16")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    connection_counts = [int(k) for k in args.connections.split(",")]
    tune_garbage_collector()
    os.environ.setdefault("TIDINGS_SECRET_KEY", "bench-secret-0123456789")
    console = Console()
    inst = fresh_installation(args.database_url or None)
    workspace, _ = make_workspace(inst)
    with sink_server() as port:
        with inst.db.transaction() as session:
            fresh = workspaces.get_workspace(session, workspace.id)
            assert fresh is not None
            workspaces.update_workspace(
                session,
                workspace=fresh,
                changes={"policy": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}},
                now=inst.clock.now(),
            )
            mailing.create_sender(
                session,
                workspace=fresh,
                data={
                    "name": "newsletter",
                    "from_name": "茶行 Tea House",
                    "from_address": "news@teahouse.example",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": port,
                    "smtp_security": "none",
                },
                box=inst.secret_box,
                now=inst.clock.now(),
            )
            sequences.create_sequence(
                session,
                workspace=fresh,
                data=DEFINITION,
                status="active",
                created_by="bench",
                now=inst.clock.now(),
            )
        every = fill(inst, workspace.id, args.contacts + args.baseline)
        ours_ids, baseline_ids = every[: args.contacts], every[args.contacts :]

        baseline = queue_one_by_one(inst, workspace.id, baseline_ids)
        enroll(inst, workspace.id, ours_ids)
        print(f"  {len(ours_ids):,} enrollments due; running", file=sys.stderr)
        ours = timed_run(inst.settings.database_url, 1, 500)

        with inst.db.transaction() as session:
            outcomes = dict(
                session.execute(
                    select(Message.status, func.count())
                    .where(Message.channel == "email")
                    .group_by(Message.status)
                ).all()
            )
            # Nothing goes out until a delivery run makes its share due.
            session.execute(
                update(Message)
                .where(Message.channel == "email")
                .values(next_attempt_at=inst.clock.now() + timedelta(days=365))
            )
            queued = list(
                session.scalars(
                    select(Message.id)
                    .where(Message.channel == "email", Message.status == "queued")
                    .order_by(Message.id)
                )
            )
            size = len(session.scalar(select(Message.content).where(Message.id == queued[0])) or "")
        rate, base_rate = args.contacts / ours, len(baseline_ids) / baseline
        table = Table(
            title=f"Rendering and queueing e-mails · {inst.db.engine.dialect.name} · {machine()}"
        )
        for column in ("way", "e-mails", "seconds", "e-mails/s", "× baseline"):
            table.add_column(column, justify="right")
        table.add_row("sequence runner (batches of 500)", f"{args.contacts:,}", f"{ours:.1f}",
                      f"{rate:,.0f}", f"{rate / base_rate:.1f}×")  # fmt: skip
        table.add_row("queue_email, one per transaction", f"{len(baseline_ids):,}",
                      f"{baseline:.1f}", f"{base_rate:,.0f}", "1.0×")  # fmt: skip
        console.print(table)
        console.print(f"outcomes: {outcomes}")

        table = Table(title=f"SMTP delivery to a local server · {args.deliver:,} e-mails per run")
        for column in ("connections", "dispatcher e-mails/s", "bare smtplib e-mails/s", "ratio"):
            table.add_column(column, justify="right")
        needed = args.deliver * len(connection_counts)
        assert len(queued) >= needed, f"only {len(queued)} queued e-mails, {needed} needed"
        for k, connections in enumerate(connection_counts):
            share = queued[k * args.deliver : (k + 1) * args.deliver]
            ours_rate = len(share) / deliver_ours(inst, share, connections)
            bare_rate = args.deliver / deliver_bare(port, args.deliver, connections, size * 2)
            table.add_row(str(connections), f"{ours_rate:,.0f}", f"{bare_rate:,.0f}",
                          f"{ours_rate / bare_rate:.2f}")  # fmt: skip
        console.print(table)
    inst.close()


if __name__ == "__main__":
    main()
