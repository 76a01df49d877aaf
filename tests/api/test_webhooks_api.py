"""Outgoing webhooks end to end (X1, X3): a subscriber on loopback receives signed events
from a customer's WhatsApp message within one worker pass ("I want to buy iPhone 15 Pro Max"
arrives as ``order.intent`` with the SKU); failures are retried every five minutes, then
dead-lettered and replayable by hand; a permanent refusal is not retried and a 410
unsubscribes; the REST-hook and polling endpoints Zapier and Make use; no webhook to a private
address unless the operator allowed it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_automation_rules import says
from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant, make_tenant
from tests.receiver import Receiver, receiver
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.webhooks.domain import verify
from tidings.webhooks.jobs import WebhookDispatcher
from tidings.workspaces import service as workspaces

API = "/api/v1"
IPHONE = {
    "sku": "APL-IP15PM",
    "name": "iPhone 15 Pro Max",
    "aliases": ["iPhone15 Pro Max", "ไอโฟน 15 โปรแม็กซ์", "苹果15 Pro Max"],
    "price": "48900",
    "currency": "THB",
}


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def allow_loopback(tidings: Tidings, tenant: Tenant) -> None:
    """What the operator runs: ``tidings workspace allow-private-webhooks <slug>``."""
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        workspaces.allow_private_webhooks(session, workspace, allow=True, now=tidings.clock.now())


def pump(tidings: Tidings, passes: int = 3) -> None:
    """Worker passes with the webhook dispatcher: the message, the rules' detections, the
    fan-out, the posts. The clock moves past the feed's settle delay (PostgreSQL)."""
    dispatcher = WebhookDispatcher(box=tidings.secret_box, courier=tidings.webhook_courier)
    worker = tidings.make_worker(sources=[*tidings.work_sources, dispatcher])
    assert isinstance(tidings.clock, VirtualClock)
    for _ in range(passes):
        worker.run_once()
        tidings.clock.advance(timedelta(seconds=3))


def subscribe(client: TestClient, tenant: Tenant, url: str, events: list[str]) -> dict[str, Any]:
    answer = client.post(
        f"{API}/webhooks", json={"url": url, "events": events}, headers=tenant.headers()
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def deliveries(client: TestClient, tenant: Tenant, **query: Any) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/webhooks/deliveries", params=query, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def test_a_private_address_is_refused_unless_the_operator_allows_it(
    client: TestClient, tenant: Tenant, tidings: Tidings, hook: Receiver
) -> None:
    refused = client.post(
        f"{API}/webhooks",
        json={"url": hook.url, "events": ["contact.created"]},
        headers=tenant.headers(),
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "url"
    assert "non-public address 127.0.0.1" in refused.json()["error"]["message"]
    for url in ("http://169.254.169.254/latest/meta-data", "http://[::1]:8080/", "http://10.0.0.7"):
        answer = client.post(
            f"{API}/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.headers()
        )
        assert answer.status_code == 422, url

    allow_loopback(tidings, tenant)
    assert subscribe(client, tenant, hook.url, ["contact.created"])["active"] is True
    # Another workspace is not allowed by this one's permission.
    other = make_tenant(tidings, "other-shop")
    answer = client.post(
        f"{API}/webhooks", json={"url": hook.url, "events": ["*"]}, headers=other.headers()
    )
    assert answer.status_code == 422


def test_i_want_to_buy_reaches_the_subscriber_signed_with_the_sku(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str, hook: Receiver
) -> None:
    allow_loopback(tidings, tenant)
    product = client.post(f"{API}/products", json=IPHONE, headers=tenant.headers())
    assert product.status_code == 201, product.text
    created = subscribe(
        client, tenant, hook.url, ["order.intent", "message.received", "conversation.*"]
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    pump(tidings, 1)  # the worker has been running before the customer writes

    assert (
        post(client, webhook_path, says(tidings, "อยากซื้อ iPhone15 Pro Max ค่ะ")).status_code == 200
    )
    assert (
        post(client, webhook_path, says(tidings, "I want to buy an iphone 15 pro max")).status_code
        == 200
    )
    assert (
        post(
            client, webhook_path, says(tidings, "iPhone 15 Pro Max ยังไม่ได้ของเลยค่ะ พัสดุอยู่ไหน")
        ).status_code
        == 200
    )
    pump(tidings)

    # Deliveries go out concurrently: receivers order by the event's time or id, not arrival.
    purchases = sorted(hook.of_type("order.intent"), key=lambda r: r.json()["data"]["event"]["id"])
    assert len(purchases) == 2  # the third message asks where the parcel is: not a purchase
    first = purchases[0]
    assert verify(
        secret,
        timestamp=first.headers["x-tidings-timestamp"],
        signature=first.headers["x-tidings-signature"],
        body=first.body,
        now=tidings.clock.now(),
    )
    assert not verify(  # a body changed on the way fails
        secret,
        timestamp=first.headers["x-tidings-timestamp"],
        signature=first.headers["x-tidings-signature"],
        body=first.body.replace(b"APL", b"XXX"),
        now=tidings.clock.now(),
    )
    assert not verify(  # and so does the same request replayed an hour later
        secret,
        timestamp=first.headers["x-tidings-timestamp"],
        signature=first.headers["x-tidings-signature"],
        body=first.body,
        now=tidings.clock.now() + timedelta(hours=1),
    )
    body = first.json()
    assert body["type"] == "order.intent"
    assert body["id"] == first.headers["x-tidings-event-id"]
    properties = body["data"]["event"]["properties"]
    assert properties["sku"] == "APL-IP15PM"
    assert properties["product"] == "iPhone 15 Pro Max"
    assert properties["text"] == "อยากซื้อ iPhone15 Pro Max ค่ะ"
    assert body["data"]["contact"]["phone"] == "+66812345678"
    assert body["data"]["contact"]["name"] == "สมหญิง ใจดี"
    assert len(hook.of_type("message.received")) == 3
    assert {r.headers["x-tidings-attempt"] for r in hook.received} == {"1"}

    # The team takes the conversation over and resolves it: the CRM hears of both.
    [conversation] = client.get(f"{API}/conversations", headers=tenant.headers()).json()["items"]
    path = f"{API}/conversations/{conversation['id']}"
    taken = client.post(
        f"{path}/assign", json={"assignee_id": tenant.owner_id}, headers=tenant.headers()
    )
    assert taken.status_code == 200, taken.text
    assert client.post(f"{path}/resolve", headers=tenant.headers()).status_code == 200
    assert client.post(f"{path}/resolve", headers=tenant.headers()).status_code == 200  # again
    pump(tidings, 2)
    [assigned] = hook.of_type("conversation.assigned")
    [resolved] = hook.of_type("conversation.resolved")  # once: the second changed nothing
    assert assigned.json()["data"]["event"]["properties"]["assignee_id"] == tenant.owner_id
    assert resolved.json()["data"]["event"]["properties"]["conversation_id"] == conversation["id"]

    # Every delivery is on record, delivered, with the time the receiver took.
    rows = deliveries(client, tenant, state="delivered")
    assert len(rows) == 7
    assert all(r["attempts"] == 1 and r["duration_ms"] is not None for r in rows)
    health = client.get(f"{API}/webhooks/{created['id']}/health", headers=tenant.headers()).json()
    assert health["delivered"] == 7 and health["success_rate"] == 1.0 and health["pending"] == 0


def test_a_failing_receiver_is_retried_every_five_minutes_then_dead_lettered_and_replayed(
    client: TestClient, tenant: Tenant, tidings: Tidings, hook: Receiver
) -> None:
    allow_loopback(tidings, tenant)
    created = subscribe(client, tenant, hook.url, ["contact.*"])
    pump(tidings, 1)
    hook.answer_next(500, 503)
    answer = client.post(
        f"{API}/contacts", json={"phone": "+66811111111", "name": "Nok"}, headers=tenant.headers()
    )
    assert answer.status_code == 201, answer.text
    pump(tidings, 2)
    [row] = deliveries(client, tenant)
    assert (row["state"], row["attempts"], row["last_status_code"]) == ("pending", 1, 500)
    pump(tidings, 2)  # six seconds later: not due yet
    assert len(hook.received) == 1

    tidings.clock.advance(timedelta(minutes=5))
    pump(tidings, 1)
    [row] = deliveries(client, tenant)
    assert (row["state"], row["attempts"], row["last_status_code"]) == ("pending", 2, 503)
    tidings.clock.advance(timedelta(minutes=5))
    pump(tidings, 1)
    [row] = deliveries(client, tenant)
    assert (row["state"], row["attempts"]) == ("delivered", 3)
    assert [r.json()["id"] for r in hook.received] == [row["event_id"]] * 3  # same event id

    # Down for good: the first attempt and three retries, then the dead letters.
    hook.answer_next(*[502] * 4)
    client.patch(
        f"{API}/contacts/{answer.json()['id']}", json={"name": "Nok S."}, headers=tenant.headers()
    )
    pump(tidings, 2)  # the first attempt
    for _ in range(3):  # the three retries, five minutes apart
        tidings.clock.advance(timedelta(minutes=5))
        pump(tidings, 1)
    [dead] = deliveries(client, tenant, state="dead")
    assert (dead["attempts"], dead["last_status_code"], dead["event_type"]) == (
        4,
        502,
        "contact.updated",
    )
    assert dead["payload"]["data"]["contact"]["name"] == "Nok S."
    health = client.get(f"{API}/webhooks/{created['id']}/health", headers=tenant.headers()).json()
    assert (health["delivered"], health["dead"], health["success_rate"]) == (1, 1, 0.5)

    # The receiver is fixed: replay by hand.
    replayed = client.post(
        f"{API}/webhooks/deliveries/{dead['id']}/replay", headers=tenant.headers()
    )
    assert replayed.status_code == 200
    assert (replayed.json()["state"], replayed.json()["replays"]) == ("pending", 1)
    again = client.post(f"{API}/webhooks/deliveries/{dead['id']}/replay", headers=tenant.headers())
    assert again.status_code == 409  # already waiting
    pump(tidings, 1)
    assert deliveries(client, tenant, state="dead") == []
    assert hook.received[-1].json()["type"] == "contact.updated"


def test_a_permanent_refusal_is_not_retried_and_410_unsubscribes(
    client: TestClient, tenant: Tenant, tidings: Tidings, hook: Receiver
) -> None:
    allow_loopback(tidings, tenant)
    created = subscribe(client, tenant, hook.url, ["tag.added"])
    pump(tidings, 1)
    contact = client.post(
        f"{API}/contacts", json={"phone": "+66822222222"}, headers=tenant.headers()
    ).json()
    hook.answer_next(400)
    client.post(
        f"{API}/contacts/{contact['id']}/tags", json={"tags": ["vip"]}, headers=tenant.headers()
    )
    pump(tidings, 2)
    [dead] = deliveries(client, tenant)
    assert (dead["state"], dead["attempts"], dead["last_status_code"]) == ("dead", 1, 400)

    hook.answer_next(410)
    client.post(
        f"{API}/contacts/{contact['id']}/tags", json={"tags": ["gold"]}, headers=tenant.headers()
    )
    pump(tidings, 2)
    subscription = client.get(f"{API}/webhooks/{created['id']}", headers=tenant.headers()).json()
    assert subscription["active"] is False
    assert "410" in subscription["disabled_reason"]
    client.post(
        f"{API}/contacts/{contact['id']}/tags",
        json={"tags": ["platinum"]},
        headers=tenant.headers(),
    )
    pump(tidings, 2)
    assert len(hook.received) == 2  # nothing more after the 410

    # Switched on again, and tested by hand.
    switched = client.patch(
        f"{API}/webhooks/{created['id']}", json={"active": True}, headers=tenant.headers()
    )
    assert switched.json()["active"] is True and switched.json()["disabled_reason"] is None
    assert (
        client.post(f"{API}/webhooks/{created['id']}/test", headers=tenant.headers()).status_code
        == 202
    )
    pump(tidings, 1)
    assert hook.received[-1].json()["type"] == "ping"


def test_rest_hooks_subscribe_unsubscribe_and_recent_items_for_polling(
    client: TestClient, tenant: Tenant, tidings: Tidings, hook: Receiver
) -> None:
    allow_loopback(tidings, tenant)
    pump(tidings, 1)
    for phone in ("+66833333331", "+66833333332"):
        client.post(f"{API}/contacts", json={"phone": phone}, headers=tenant.headers())
    recent = client.get(f"{API}/hooks/recent/contact.created", headers=tenant.headers())
    assert recent.status_code == 200
    items = recent.json()
    assert [i["data"]["contact"]["phone"] for i in items] == ["+66833333332", "+66833333331"]
    assert all(i["id"].startswith("evt_") and i["type"] == "contact.created" for i in items)

    hooked = client.post(
        f"{API}/hooks",
        json={"hookUrl": hook.url, "event": "contact.created"},
        headers=tenant.headers(),
    )
    assert hooked.status_code == 201, hooked.text
    client.post(f"{API}/contacts", json={"phone": "+66833333333"}, headers=tenant.headers())
    pump(tidings, 2)
    [got] = hook.received
    assert got.json()["data"]["contact"]["phone"] == "+66833333333"
    # Zapier tells new items by id: the pushed event and the polled one agree.
    newest = client.get(f"{API}/hooks/recent/contact.created?limit=1", headers=tenant.headers())
    assert newest.json()[0]["id"] == got.json()["id"]

    gone = client.delete(f"{API}/hooks/{hooked.json()['id']}", headers=tenant.headers())
    assert gone.status_code == 204
    client.post(f"{API}/contacts", json={"phone": "+66833333334"}, headers=tenant.headers())
    pump(tidings, 2)
    assert len(hook.received) == 1


def test_bad_input_names_the_field_and_workspaces_stay_apart(
    client: TestClient, tenant: Tenant, tidings: Tidings
) -> None:
    headers = tenant.headers()
    cases = [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://user:pw@example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://example.com/x", "events": ["contact.craeted"]}, "events"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"events": ["*"]}, "url"),
    ]
    for body, field in cases:
        answer = client.post(f"{API}/webhooks", json=body, headers=headers)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["field"] == field, body
    assert client.get(f"{API}/hooks/recent/nothing.here", headers=headers).status_code == 422
    agent = client.post(
        f"{API}/webhooks",
        json={"url": "https://example.com/x", "events": ["*"]},
        headers=tenant.headers(workspaces.Role.AGENT),
    )
    assert agent.status_code == 403
    catalogue = client.get(f"{API}/webhooks/events", headers=headers).json()
    assert {"order.intent", "message.received", "contact.created"} <= {e["name"] for e in catalogue}

    allow_loopback(tidings, tenant)
    mine = subscribe(client, tenant, "http://127.0.0.1:9/x", ["*"])
    other = make_tenant(tidings, "other-shop")
    for method, path in (
        ("get", f"{API}/webhooks/{mine['id']}"),
        ("delete", f"{API}/webhooks/{mine['id']}"),
        ("post", f"{API}/webhooks/{mine['id']}/rotate-secret"),
        ("delete", f"{API}/hooks/{mine['id']}"),
    ):
        assert getattr(client, method)(path, headers=other.headers()).status_code == 404
    assert client.get(f"{API}/webhooks", headers=other.headers()).json() == []


def test_products_name_skus_and_refuse_clashes(client: TestClient, tenant: Tenant) -> None:
    headers = tenant.headers()
    assert client.post(f"{API}/products", json=IPHONE, headers=headers).status_code == 201
    for name in ("iPhone15 Pro Max", "IPHONE 15 PRO MAX", "苹果15 Pro Max"):
        found = client.get(f"{API}/products/sku", params={"name": name}, headers=headers)
        assert found.json()["sku"] == "APL-IP15PM", name
    unknown = client.get(f"{API}/products/sku", params={"name": "Galaxy S24"}, headers=headers)
    assert unknown.json()["sku"] is None
    clash = client.post(
        f"{API}/products",
        json={"sku": "APL-IP15", "name": "iPhone 15", "aliases": ["iphone15 pro max"]},
        headers=headers,
    )
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "aliases"
    for body, field, status in (
        ({"sku": "bad sku!", "name": "x"}, "sku", 422),
        ({"sku": "A1", "name": ""}, "name", 422),
        ({"sku": "A1", "name": "x", "price": "12,50"}, "price", 422),
        ({"sku": "A1", "name": "x", "currency": "baht"}, "currency", 422),
        ({"sku": "APL-IP15PM", "name": "Other"}, "sku", 409),  # taken
    ):
        answer = client.post(f"{API}/products", json=body, headers=headers)
        assert answer.status_code == status, body
        assert answer.json()["error"]["field"] == field, body


def test_messages_sent_and_delivered_and_sequence_steps_reach_subscribers(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str, hook: Receiver
) -> None:
    from tests.api.test_dispatch_rules import a_conversation, dispatcher, queue
    from tests.api.test_sequences_api import FLOW, create
    from tests.api.test_whatsapp_webhook_endpoint import batch
    from tidings.channels.whatsapp.client import SendOutcome
    from tidings.messaging import inbox
    from tidings.messaging.dispatch import record_outcome

    allow_loopback(tidings, tenant)
    subscribe(client, tenant, hook.url, ["message.sent", "message.status", "sequence.step"])
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    message_id = queue(tidings, tenant, conversation_id)
    with tidings.db.transaction() as session:
        dispatcher(tidings).claim(session, now=tidings.clock.now(), limit=10)
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        row = inbox.get_message_or_404(session, workspace, message_id)
        record_outcome(
            session,
            row,
            SendOutcome("accepted", message_id="wamid.OUT1"),
            max_retries=2,
            now=tidings.clock.now(),
        )
    post(client, webhook_path, batch(statuses=(("wamid.OUT1", "delivered"),)))
    pump(tidings, 2)
    [sent] = hook.of_type("message.sent")
    [status] = hook.of_type("message.status")
    assert sent.json()["data"]["message"]["id"] == message_id
    assert sent.json()["data"]["message"]["status"] == "accepted"
    assert status.json()["data"]["message"]["status"] == "delivered"
    assert status.json()["data"]["message"]["delivered_at"] is not None

    sequence = create(client, tenant, FLOW).json()
    contact = client.post(
        f"{API}/contacts", json={"phone": "+66899999999", "name": "Ploy"}, headers=tenant.headers()
    ).json()
    enrolled = client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [contact["id"]]},
        headers=tenant.headers(),
    )
    assert enrolled.status_code == 200, enrolled.text
    pump(tidings, 3)
    steps = hook.of_type("sequence.step")
    assert steps, "the first step ran and was announced"
    first = steps[0].json()["data"]["step"]
    assert (first["sequence_id"], first["contact_id"]) == (sequence["id"], contact["id"])
    assert first["step_id"] == "welcome"
