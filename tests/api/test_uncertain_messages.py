"""Messages whose fate is unknown are listed to admins, who mark them sent or send them again,
one by one or all at once, with the decision recorded (#22, X3)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.api.test_dispatch_rules import a_conversation, dispatcher, message, queue
from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.messaging import repository
from tidings.messaging import service as messaging
from tidings.messaging.domain import Purpose
from tidings.workspaces.domain import Role

API = "/api/v1"
UNCERTAIN = f"{API}/messages/uncertain"


def uncertain_promotions(
    client: TestClient, tidings: Tidings, tenant: Tenant, path: str, clock: VirtualClock, n: int
) -> list[int]:
    """``n`` messages not to be resent on a guess, on the wire when their worker died."""
    conversation_id = a_conversation(client, tidings, tenant, path)
    claimed: list[int] = []
    for k in range(n):
        queue(
            tidings,
            tenant,
            conversation_id,
            purpose=Purpose.UTILITY,
            resend_if_uncertain=False,
            content={"type": "text", "text": {"body": f"Your order {k} is packed"}},
        )
        with tidings.db.transaction() as session:
            claimed += [
                j.message_id
                for j in dispatcher(tidings).claim(session, now=clock.now(), limit=10).jobs
            ]
        clock.advance(timedelta(seconds=6))
    with tidings.db.transaction() as session:
        repository.mark_on_wire(session.connection(), claimed, now=clock.now())
        # The worker that claimed them is gone: its lease is out at once.
        assert messaging.recover_in_flight(session, now=clock.now(), live_workers=[]) == n
    return claimed


def test_an_admin_sees_what_is_known_and_marks_one_sent_and_resends_another(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    first, second, third = uncertain_promotions(client, tidings, tenant, webhook_path, clock, 3)
    page = client.get(UNCERTAIN, headers=tenant.headers(Role.ADMIN)).json()
    assert page["total"] == 3 and [m["id"] for m in page["items"]] == [first, second, third]
    item = page["items"][0]
    assert item["recipient"] == "+85291234567" and item["wire_at"] is not None
    assert item["text"] == "Your order 0 is packed" and item["purpose"] == "utility"

    sent = client.post(
        f"{UNCERTAIN}/decide", json={"decision": "sent", "ids": [first]}, headers=tenant.headers()
    )
    assert sent.status_code == 200 and sent.json() == {"decided": [first]}
    resend = client.post(
        f"{UNCERTAIN}/decide",
        json={"decision": "resend", "ids": [second]},
        headers=tenant.headers(Role.ADMIN),
    )
    assert resend.json() == {"decided": [second]}
    assert message(client, tenant, first)["status"] == "sent"
    again = message(client, tenant, second)
    assert again["status"] == "queued" and "decision of" in again["status_reason"]
    traces = client.get(f"{API}/messages/{first}/traces", headers=tenant.headers()).json()
    assert traces[-1]["outcome"] == "decided_sent" and "owner key" in traces[-1]["reason"]
    assert client.get(UNCERTAIN, headers=tenant.headers()).json()["total"] == 1

    everything = client.post(
        f"{UNCERTAIN}/decide", json={"decision": "resend", "all": True}, headers=tenant.headers()
    )
    assert everything.json() == {"decided": [third]}
    assert client.get(UNCERTAIN, headers=tenant.headers()).json()["total"] == 0


def test_deciding_asks_for_clear_input_and_only_admins_of_the_workspace_may(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    (only,) = uncertain_promotions(client, tidings, tenant, webhook_path, clock, 1)
    decide = f"{UNCERTAIN}/decide"
    for body, field in (
        ({"decision": "sent"}, "ids"),
        ({"decision": "sent", "ids": [only], "all": True}, "ids"),
        ({"decision": "sent", "ids": []}, "ids"),
        ({"decision": "maybe", "ids": [only]}, "decision"),
    ):
        answer = client.post(decide, json=body, headers=tenant.headers())
        assert answer.status_code == 422, body
        assert field in str(answer.json()["error"]), answer.json()
    assert (
        client.post(
            decide, json={"decision": "sent", "ids": [999999]}, headers=tenant.headers()
        ).status_code
        == 404
    )
    assert client.get(UNCERTAIN, headers=tenant.headers(Role.AGENT)).status_code == 403
    agent = client.post(
        decide, json={"decision": "sent", "all": True}, headers=tenant.headers(Role.AGENT)
    )
    assert agent.status_code == 403
    other = make_tenant(tidings, "other-shop")
    assert client.get(UNCERTAIN, headers=other.headers()).json()["total"] == 0
    stranger = client.post(
        decide, json={"decision": "resend", "ids": [only]}, headers=other.headers()
    )
    assert stranger.status_code == 404
    assert message(client, tenant, only)["status"] == "uncertain"
