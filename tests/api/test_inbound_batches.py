"""Customers' messages recorded together (#23, item 7) and one by one end in the same place.

``channels.inbound.record_inbound_messages`` (a few statements per batch, with what it leaves
taken one by one) is checked against ``record_inbound_message`` (the reference, one message at
a time) on random batches in two twin workspaces: new and known senders, senders known by a
merged contact's alias, contacts without names or without their WhatsApp id, username users
known only by their BSUID, a sender writing once with and once without a phone, keywords
(STOP, START), files, ad referrals, repeated messages and times in the future. Compared: the
contacts, their external ids and consents, their timelines, conversations, messages both ways
and the queued downloads. Then the worker's routing, end to end from a signed webhook.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.api.test_whatsapp_numbers import number_body
from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels import inbound
from tidings.channels import service as channels
from tidings.channels.domain import (
    InboundMessage,
    MediaRef,
    MessageKind,
    Referral,
    WhatsAppIdentity,
)
from tidings.channels.orm import WhatsAppInboundEvent
from tidings.contacts.orm import (
    Consent,
    Contact,
    ContactAlias,
    ContactEvent,
    ExternalId,
)
from tidings.kernel.clock import VirtualClock
from tidings.messaging.orm import Conversation, Message
from tidings.scheduler.orm import BackgroundJob
from tidings.workspaces import service as workspaces

API = "/api/v1"
PEOPLE = 4
_runs = itertools.count()

# What each person already is in the workspace before the batch.
BEFORE = st.sampled_from(["new", "known", "no_names", "no_whatsapp_id", "alias", "resolved"])
messages = st.lists(
    st.tuples(
        st.integers(0, PEOPLE - 1),  # who
        st.sampled_from(["both", "phone", "bsuid"]),  # how WhatsApp names them
        st.sampled_from(["hi", "STOP", "start", None]),  # None: a photo
        st.booleans(),  # came from an ad
        st.sampled_from([None, "Mei Lin Wang", "小明"]),  # profile name
        st.booleans(),  # a repeat of the message before
        st.integers(-600, 60),  # sent, seconds from now (after now: a skewed clock)
    ),
    min_size=1,
    max_size=12,
)


def phone_of(person: int, run: int) -> str:
    return f"8869{run % 100_000:05d}{person:03d}"


def message_of(row: tuple[Any, ...], n: int, run: int, now: datetime) -> InboundMessage:
    person, naming, text, ad, profile, _, offset = row
    wa_id = phone_of(person, run) if naming != "bsuid" else None
    user_id = f"TW.{run}.{person}" if naming != "phone" else None
    media = None if text is not None else MediaRef(media_id=f"media-{n}", mime_type="image/jpeg")
    return InboundMessage(
        channel_id="106540352242922",
        account_id="102290129340398",
        message_id=f"wamid.in.{n}",
        sender=WhatsAppIdentity(wa_id=wa_id, user_id=user_id, profile_name=profile),
        sent_at=now + timedelta(seconds=offset),
        kind=MessageKind.TEXT if text is not None else MessageKind.IMAGE,
        text=text,
        media=media,
        referral=Referral(source_type="ad", source_id="ad-1", headline="Sale") if ad else None,
        raw={"id": f"wamid.in.{n}", "type": "text" if text else "image"},
    )


def twin(tidings: Tidings, name: str, run: int) -> tuple[int, int]:
    """A workspace with a WhatsApp number, made directly (no users or keys to hash)."""
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        workspace = workspaces.create_workspace(
            session,
            slug=f"{name}-{run}",
            settings=workspaces.WorkspaceSettings(name, "TW", "Asia/Taipei", "zh-Hant-TW"),
            now=now,
        )
        number = channels.add_number(
            session,
            workspace=workspace,
            data=number_body(phone_number_id=f"{len(name)}{run:09d}"),
            box=tidings.secret_box,
            now=now,
        )
        return workspace.id, number.id


def prepare(
    tidings: Tidings, workspace_id: int, number_id: int, before: list[str], run: int
) -> None:
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        for person, kind in enumerate(before):
            if kind == "new":
                continue
            phone = phone_of(person, run)
            contact = Contact(
                workspace_id=workspace_id,
                phone=None if kind == "alias" else f"+{phone}",
                name=None if kind == "no_names" else "Known Person",
                country="TW",
                lifecycle_stage="customer",
                score=0,
                custom_fields={},
                do_not_contact=False,
                created_at=now,
                updated_at=now,
            )
            session.add(contact)
            session.flush()
            if kind not in ("no_whatsapp_id", "alias"):
                session.add(
                    ExternalId(
                        workspace_id=workspace_id,
                        contact_id=contact.id,
                        system="whatsapp",
                        external_id=phone,
                    )
                )
            if kind == "alias":  # a merge brought this person's phone to the contact
                session.add(
                    ContactAlias(
                        workspace_id=workspace_id,
                        contact_id=contact.id,
                        kind="phone",
                        value=f"+{phone}",
                        created_at=now,
                    )
                )
            if kind == "resolved":
                session.add(
                    Conversation(
                        workspace_id=workspace_id,
                        number_id=number_id,
                        contact_id=contact.id,
                        status="resolved",
                        unread_count=0,
                        last_inbound_at=now - timedelta(days=3),
                        last_message_at=now - timedelta(days=3),
                        created_at=now,
                        updated_at=now,
                    )
                )


def record(
    tidings: Tidings,
    workspace_id: int,
    number_id: int,
    batch: list[InboundMessage],
    *,
    together: bool,
) -> list[str]:
    """Record the batch; the ids of the messages that failed (the worker would retry them)."""
    now = tidings.clock.now()
    failed: list[str] = []
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, workspace_id)
        assert workspace is not None
        left = list(range(len(batch)))
        if together:
            with session.begin_nested():
                outcome = inbound.record_inbound_messages(
                    session,
                    workspace=workspace,
                    received=[inbound.Received(n, number_id, m) for n, m in enumerate(batch)],
                    now=now,
                )
            left = outcome.left
            assert sorted(outcome.done + outcome.left) == list(range(len(batch)))
        for n in left:
            try:
                with session.begin_nested():
                    inbound.record_inbound_message(
                        session, workspace=workspace, message=batch[n], number_id=number_id, now=now
                    )
            except Exception:
                failed.append(batch[n].message_id)
    return failed


def ordered(rows: Any) -> list[Any]:
    """Rows in a fixed order (None sorts beside text by its repr)."""
    return sorted(rows, key=repr)


def snapshot(tidings: Tidings, workspace_id: int) -> dict[str, Any]:
    """Everything the batch wrote, with each row named by what it is, not by its id."""
    with tidings.db.reading() as session:
        external: dict[int, list[tuple[str, str]]] = {}
        for row in session.scalars(
            select(ExternalId).where(ExternalId.workspace_id == workspace_id)
        ):
            external.setdefault(row.contact_id, []).append((row.system, row.external_id))
        people = session.scalars(select(Contact).where(Contact.workspace_id == workspace_id))
        name_of = {c.id: (c.phone, tuple(sorted(external.get(c.id, [])))) for c in people}
        contacts = ordered(
            (name_of[c.id], c.name, c.first_name, c.last_name, c.lead_source, c.country,
             c.do_not_contact, c.lifecycle_stage)
            for c in session.scalars(select(Contact).where(Contact.workspace_id == workspace_id))
        )  # fmt: skip
        events = ordered(
            (name_of[e.contact_id], e.event_type, e.occurred_at, e.source, e.idempotency_key,
             repr(sorted((k, v) for k, v in e.properties.items() if k != "number_id")))
            for e in session.scalars(
                select(ContactEvent).where(ContactEvent.workspace_id == workspace_id)
            )
        )  # fmt: skip
        consents = ordered(
            (name_of[c.contact_id], c.channel, c.purpose, c.status, c.source)
            for c in session.scalars(select(Consent).where(Consent.workspace_id == workspace_id))
        )
        conversations = ordered(
            (name_of[c.contact_id], c.status, c.unread_count, c.last_inbound_at,
             c.last_message_at, c.snoozed_until)
            for c in session.scalars(
                select(Conversation).where(Conversation.workspace_id == workspace_id)
            )
        )  # fmt: skip
        sent = ordered(
            (name_of[m.contact_id], m.direction, m.kind, m.text or "", m.status,
             m.provider_message_id or "", m.created_at, m.reply_to or "",
             m.notification_type or "", repr(sorted(m.content.items())))
            for m in session.scalars(select(Message).where(Message.workspace_id == workspace_id))
        )  # fmt: skip
        downloads = ordered(
            (j.payload["media_id"], j.payload["mime_type"], j.max_attempts, j.state)
            for j in session.scalars(
                select(BackgroundJob).where(BackgroundJob.workspace_id == workspace_id)
            )
        )
    return {
        "contacts": contacts,
        "events": events,
        "consents": consents,
        "conversations": conversations,
        "messages": sent,
        "downloads": downloads,
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(BEFORE, min_size=PEOPLE, max_size=PEOPLE), messages)
def test_messages_recorded_together_end_as_those_recorded_one_by_one(
    client: TestClient,
    tidings: Tidings,
    clock: VirtualClock,
    before: list[str],
    rows: list[tuple[Any, ...]],
) -> None:
    run = next(_runs)
    now = clock.now()
    batch: list[InboundMessage] = []
    for n, row in enumerate(rows):
        if row[5] and batch:  # the same message delivered twice
            batch.append(batch[-1])
        else:
            batch.append(message_of(row, n, run, now))
    spaces = {}
    for name in ("one", "together"):
        workspace_id, number_id = twin(tidings, name, run)
        prepare(tidings, workspace_id, number_id, before, run)
        spaces[name] = (workspace_id, number_id)
    failed_one = record(tidings, *spaces["one"], batch, together=False)
    failed_all = record(tidings, *spaces["together"], batch, together=True)
    assert failed_all == failed_one
    assert len(failed_one) < len(batch)  # something was recorded: the comparison is not empty
    one, together = snapshot(tidings, spaces["one"][0]), snapshot(tidings, spaces["together"][0])
    for part in one:
        assert together[part] == one[part], part


def test_the_worker_records_plain_messages_together_and_the_rest_one_by_one(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """Three customers write in one POST (one of them twice, one says STOP): all become
    contacts, conversations and messages, the keyword is honoured (one by one), and every
    intake row ends processed."""

    def text(sender: str, wamid: str, body: str) -> dict[str, Any]:
        return {"from": sender, "id": wamid, "timestamp": "1795413600", "type": "text",
                "text": {"body": body}}  # fmt: skip

    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "85230001234", "phone_number_id": "106540352242922"},
        "contacts": [
            {"profile": {"name": name}, "wa_id": wa_id}
            for name, wa_id in (("Ann Lee", "85261110001"), ("陳大文", "85261110002"),
                                ("Bo", "85261110003"))
        ],
        "messages": [
            text("85261110001", "wamid.r1", "請問有貨嗎？"),
            text("85261110001", "wamid.r2", "還有紅色的嗎？"),
            text("85261110002", "wamid.r3", "STOP"),
            text("85261110003", "wamid.r4", "Hello"),
        ],
    }  # fmt: skip
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    assert post(client, webhook_path, body).status_code == 200
    for _ in range(3):
        tidings.make_worker().run_once()
    with tidings.db.reading() as session:
        intake = session.scalars(
            select(WhatsAppInboundEvent).where(
                WhatsAppInboundEvent.workspace_id == tenant.workspace_id
            )
        ).all()
        assert intake and all(row.processed_at is not None for row in intake)
        people = {
            c.phone: c
            for c in session.scalars(
                select(Contact).where(Contact.workspace_id == tenant.workspace_id)
            )
        }
        assert set(people) == {"+85261110001", "+85261110002", "+85261110003"}
        assert people["+85261110002"].name == "陳大文"
        inbox = session.scalars(
            select(Message).where(
                Message.workspace_id == tenant.workspace_id, Message.direction == "in"
            )
        ).all()
        assert sorted(m.provider_message_id or "" for m in inbox) == [
            "wamid.r1", "wamid.r2", "wamid.r3", "wamid.r4",
        ]  # fmt: skip
        ann = session.scalar(
            select(Conversation).where(Conversation.contact_id == people["+85261110001"].id)
        )
        assert ann is not None and ann.unread_count == 2 and ann.status == "open"
        opted_out = session.scalars(
            select(Consent.status).where(Consent.contact_id == people["+85261110002"].id)
        ).all()
        assert opted_out and set(opted_out) == {"opted_out"}
