"""Delivery statuses applied together (#23) and one by one end in the same place.

``messaging.apply_statuses`` (one query per number, one flush, announcements per workspace)
is checked against ``messaging.apply_status`` (the reference, one report at a time) on random
report sequences — repeated, out of order, failed with transient and permanent codes, with
and without pricing, for messages that exist and ones that do not: the same states, times,
costs, errors, traces and webhook announcements. Then the worker's routing: plain statuses
together, the rest (a failure, a status for an unknown message, an unreadable update) one by
one, in order.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels.domain import DeliveryStatus, ProviderError, StatusUpdate, WhatsAppIdentity
from tidings.channels.orm import WhatsAppInboundEvent
from tidings.contacts.orm import Contact
from tidings.kernel.clock import VirtualClock
from tidings.messaging import service as messaging
from tidings.messaging.orm import Message, SendTrace
from tidings.webhooks.orm import WebhookDelivery, WebhookSubscription
from tidings.workspaces import service as workspaces

API = "/api/v1"
MESSAGES = 4
_runs = itertools.count()
PRICES = {"*": {"marketing": 0.07, "utility": 0.01}, "HK": {"marketing": 0.05}}
COMPARED = (
    "status",
    "delivered_at",
    "read_at",
    "failed_at",
    "cost",
    "cost_currency",
    "pricing_category",
    "pricing_type",
    "error_code",
    "error_title",
    "status_reason",
)

reports = st.lists(
    st.tuples(
        st.integers(0, MESSAGES),  # MESSAGES itself: a message that is not here
        st.sampled_from(["sent", "delivered", "read", "played", "failed", "deleted"]),
        st.integers(-30, 600),  # seconds after the send
        st.sampled_from([None, 131000, 131026, 130429]),  # a failure's code
        st.sampled_from([None, ("marketing", "regular"), ("utility", "free_entry_point")]),
    ),
    min_size=1,
    max_size=14,
)


def sent(tidings: Tidings, tenant: Tenant, number_id: int, prefix: str) -> list[int]:
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        ids = []
        for i in range(MESSAGES):
            person = Contact(
                workspace_id=tenant.workspace_id,
                phone=f"+8529{next(_runs) % 10_000_000:07d}",
                country="HK" if i % 2 else "TW",
                lifecycle_stage="lead",
                score=0,
                custom_fields={},
                do_not_contact=False,
                created_at=now,
                updated_at=now,
            )
            session.add(person)
            session.flush()
            message = Message(
                workspace_id=tenant.workspace_id,
                contact_id=person.id,
                number_id=number_id,
                direction="out",
                kind="template" if i % 2 else "text",
                content={"type": "template"} if i % 2 else {"type": "text"},
                status="sent",
                provider_message_id=f"{prefix}.{i}",
                recipient=person.phone,
                origin="broadcast",
                purpose="marketing",
                attempts=1,
                sent_at=now,
                wire_at=now,
                created_at=now,
                updated_at=now,
            )
            session.add(message)
            session.flush()
            ids.append(message.id)
    return ids


def update(prefix: str, report: tuple[Any, ...], sent_at: datetime) -> StatusUpdate:
    index, status, offset, code, pricing = report
    errors = ()
    if status == "failed" and code is not None:
        errors = (ProviderError(code=code, title=f"error {code}", message="", details="x"),)
    return StatusUpdate(
        channel_id="106540352242922",
        message_id=f"{prefix}.{index}",
        status=DeliveryStatus(status),
        at=sent_at + timedelta(seconds=offset),
        recipient=WhatsAppIdentity(wa_id="85290000000"),
        errors=errors,
        pricing_category=pricing[0] if pricing else None,
        pricing_type=pricing[1] if pricing else None,
    )


def state(tidings: Tidings, ids: list[int]) -> list[Any]:
    with tidings.db.reading() as session:
        rows = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
        traces = session.execute(
            select(
                SendTrace.message_id, SendTrace.outcome, SendTrace.reason, SendTrace.provider_code
            )
            .where(SendTrace.message_id.in_(ids))
            .order_by(SendTrace.id)
        ).all()
        announced = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    position = {message_id: n for n, message_id in enumerate(ids)}
    # A retry's time carries jitter seeded by the message's id: whether one is set compares.
    messages = [
        (*(getattr(rows[i], c) for c in COMPARED), rows[i].next_attempt_at is not None) for i in ids
    ]
    trail = [(position[m], outcome, reason, code) for m, outcome, reason, code in traces]
    told = [
        (position[d.payload["data"]["message"]["id"]], d.event_type,
         {k: v for k, v in d.payload["data"]["message"].items()
          if k not in ("id", "contact_id", "provider_message_id", "conversation_id")})
        for d in announced
        if d.payload["data"]["message"]["id"] in position
    ]  # fmt: skip
    return [messages, trail, told]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports)
def test_statuses_applied_together_end_as_those_applied_one_by_one(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    clock: VirtualClock,
    sequence: list[tuple[Any, ...]],
) -> None:
    headers = tenant.headers()
    with tidings.db.transaction() as session:
        listening = session.scalar(
            select(WebhookSubscription).where(
                WebhookSubscription.workspace_id == tenant.workspace_id
            )
        )
        if listening is None:  # once per workspace: prices, and a subscriber to announce to
            workspace = workspaces.get_workspace(session, tenant.workspace_id)
            assert workspace is not None
            workspaces.update_workspace(
                session,
                workspace=workspace,
                changes={"policy": {"message_prices": PRICES}},
                now=clock.now(),
            )
            session.add(
                WebhookSubscription(
                    workspace_id=tenant.workspace_id,
                    url="https://hooks.example/status",
                    events={"events": ["message.status"]},
                    sealed_secret="-",
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )
    [number] = client.get(f"{API}/whatsapp-numbers", headers=headers).json()
    run = next(_runs)
    one, together = f"one{run}", f"all{run}"
    one_ids = sent(tidings, tenant, number["id"], one)
    together_ids = sent(tidings, tenant, number["id"], together)
    at = clock.now()
    missing_one: list[str] = []
    for report in sequence:  # the reference: each report on its own, as before
        with tidings.db.transaction() as session:
            try:
                messaging.apply_status(
                    session, number_id=number["id"], update=update(one, report, at), now=at
                )
            except messaging.UnknownMessageError as error:
                missing_one.append(str(error).replace(one, ""))
    with tidings.db.transaction() as session:
        unknown = messaging.apply_statuses(
            session,
            [(number["id"], update(together, report, at)) for report in sequence],
            now=at,
        )
    assert sorted(m.replace(together, "") for _, m in unknown) == sorted(set(missing_one))
    assert state(tidings, one_ids) == state(tidings, together_ids)


def test_the_worker_takes_plain_statuses_together_and_the_rest_in_order(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    [number] = client.get(f"{API}/whatsapp-numbers", headers=tenant.headers()).json()
    ids = sent(tidings, tenant, number["id"], "route")
    stamp = str(int(clock.now().timestamp()))

    def status(i: int, word: str, **more: Any) -> dict[str, Any]:
        return {"id": f"route.{i}", "status": word, "timestamp": stamp,
                "recipient_id": "85290000000", **more}  # fmt: skip

    statuses = [
        status(0, "delivered"),
        status(0, "read"),
        # Message 1 fails, then a late "delivered" comes: all its reports go one by one, in
        # order, so the failure stands (taken together first, the delivery would).
        status(1, "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]),
        status(1, "delivered"),
        status(2, "read"),
        status(9, "delivered"),  # no such message (yet): retried later, as ever
        {"id": {"not": "text"}, "status": "read", "timestamp": stamp},  # quarantined
    ]
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "85230001234",
                         "phone_number_id": "106540352242922"},
            "statuses": statuses}}]}],
    }  # fmt: skip
    assert post(client, webhook_path, body).status_code == 200
    worker = tidings.make_worker(sources=tidings.work_sources)
    worker.run_once()
    with tidings.db.reading() as session:
        states = [session.get(Message, i).status for i in ids[:3]]  # type: ignore[union-attr]
        intake = session.scalars(
            select(WhatsAppInboundEvent).order_by(WhatsAppInboundEvent.id)
        ).all()
    assert states == ["read", "failed", "read"]
    outcome = {
        e.event_key.split(":")[1][:20]: (e.processed_at is not None, e.quarantined_at is not None)
        for e in intake
        if e.kind == "status"
    }
    assert outcome["route.9"] == (False, False)  # waits for its message, retried with backoff
    assert sum(quarantined for _, quarantined in outcome.values()) == 1
    assert all(
        done for key, (done, _) in outcome.items() if key.startswith("route.") and key != "route.9"
    )
