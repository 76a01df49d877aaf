"""Cost accounting (P9): a delivered template costs the rate card's price for the category
WhatsApp applied and the contact's country; free types and free-form replies cost nothing;
the cost report divides by paid conversations and by customers acquired; broadcasts show
their expected and actual cost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_dispatch_rules import a_conversation, dispatcher, message, queue
from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels.whatsapp.client import SendOutcome
from tidings.kernel.clock import VirtualClock
from tidings.messaging import inbox
from tidings.messaging.costs import charge, estimate, unit_price
from tidings.messaging.dispatch import record_outcome
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy

API = "/api/v1"
CARD = {
    "*": {"marketing": 0.07, "utility": 0.01, "authentication": 0.01},
    "HK": {"marketing": 0.05},
}


def test_prices_come_from_the_card_by_country_then_the_default_row() -> None:
    policy = WorkspacePolicy(message_prices=CARD)
    assert unit_price(policy, "HK", "marketing") == 0.05
    assert unit_price(policy, "hk", "utility") == 0.01  # not in HK's row: the * row
    assert unit_price(policy, "TW", "marketing") == 0.07
    assert unit_price(policy, None, "marketing_lite") == 0.07
    assert charge(policy, country="HK", pricing_type="regular", category="marketing") == 0.05
    assert charge(policy, country="HK", pricing_type="free_entry_point", category="marketing") == 0
    assert charge(policy, country="HK", pricing_type="regular", category="service") == 0
    assert estimate(policy, {"HK": 10, "TW": 10, None: 1}, "marketing") == pytest.approx(1.27)
    with pytest.raises(ValueError, match="'\\*' row"):
        WorkspacePolicy(message_prices={"HK": {"marketing": 0.05}})


def send_and_deliver(
    client: TestClient, tidings: Tidings, tenant: Tenant, path: str, clock: VirtualClock,
    conversation_id: int, wamid: str, content: dict[str, Any], pricing: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    message_id = queue(tidings, tenant, conversation_id, content=content)
    with tidings.db.transaction() as session:
        dispatcher(tidings).claim(session, now=clock.now(), limit=10)
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        row = inbox.get_message_or_404(session, workspace, message_id)
        record_outcome(
            session, row, SendOutcome("accepted", message_id=wamid), max_retries=2, now=clock.now()
        )
    body = batch(statuses=((wamid, "delivered"),))
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["timestamp"] = str(int(clock.now().timestamp()))
    if pricing is not None:
        status["pricing"] = {"billable": True, "pricing_model": "PMP", **pricing}
    post(client, path, body)
    tidings.make_worker(sources=tidings.work_sources).run_once()
    clock.advance(timedelta(seconds=6))
    return message(client, tenant, message_id)


def test_delivered_messages_are_charged_and_reported(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    client.patch(
        f"{API}/workspace", json={"policy": {"message_prices": CARD}}, headers=tenant.headers()
    )
    start = clock.now()
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    promo = {"type": "template", "template": {"name": "sale", "language": {"code": "zh_TW"}}}
    charged = send_and_deliver(
        client, tidings, tenant, webhook_path, clock, conversation_id, "wamid.C1", promo,
        {"type": "regular", "category": "marketing"},
    )  # fmt: skip
    assert charged["cost"] == 0.05 and charged["cost_currency"] == "USD"  # a Hong Kong number
    reply = {"type": "text", "text": {"body": "多謝"}}
    free = send_and_deliver(
        client, tidings, tenant, webhook_path, clock, conversation_id, "wamid.C2", reply, None
    )
    assert free["cost"] == 0.0
    # The customer orders: one acquisition in the period.
    contact_id = client.get(
        f"{API}/conversations/{conversation_id}", headers=tenant.headers()
    ).json()["contact_id"]
    client.post(
        f"{API}/contacts/{contact_id}/events",
        json={"type": "order.placed", "properties": {"total": 980}},
        headers=tenant.headers(),
    )
    report = client.get(
        f"{API}/reports/costs",
        params={
            "since": start.isoformat(),
            "until": (clock.now() + timedelta(hours=1)).isoformat(),
        },
        headers=tenant.headers(),
    ).json()
    assert report["total"] == pytest.approx(0.05)
    assert report["by_category"]["marketing"] == {"messages": 1, "cost": 0.05}
    assert report["paid_conversations"] == 1 and report["cost_per_conversation"] == 0.05
    assert report["customers_acquired"] == 1 and report["cost_per_acquisition"] == 0.05
    naive = client.get(
        f"{API}/reports/costs", params={"since": "2026-11-01T00:00:00"}, headers=tenant.headers()
    )
    assert naive.status_code == 422 and naive.json()["error"]["field"] == "since"


def test_a_broadcast_estimates_its_cost_by_country(
    client: TestClient, tenant: Tenant, webhook_path: str
) -> None:
    client.patch(
        f"{API}/workspace", json={"policy": {"message_prices": CARD}}, headers=tenant.headers()
    )
    for phone in ("+85291234001", "+85291234002", "0912 345 001"):
        client.post(f"{API}/contacts", json={"phone": phone}, headers=tenant.headers())
    answer = client.post(
        f"{API}/broadcasts",
        json={
            "name": "Sale",
            "dry_run": True,
            "template": {"name": "sale", "language": {"code": "zh_TW"}},
        },
        headers=tenant.headers(),
    ).json()
    # Two Hong Kong numbers at 0.05 and one Taiwanese at the default 0.07.
    assert answer["estimate"]["expected_cost"] == pytest.approx(0.17)
    assert answer["estimate"]["currency"] == "USD"
