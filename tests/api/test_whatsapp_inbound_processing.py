"""Stored webhook updates become contacts and timeline entries, once (I1, I6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels.jobs import MAX_ATTEMPTS
from tidings.kernel.clock import VirtualClock

API = "/api/v1"


def contacts(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"{API}/contacts", headers=tenant.headers()).json()[
        "items"
    ]
    return items


def timeline(client: TestClient, tenant: Tenant, contact_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"{API}/contacts/{contact_id}/events",
        params={"type": "message.received"},
        headers=tenant.headers(),
    ).json()["items"]
    return items


def test_a_customers_message_creates_the_contact_and_lands_on_its_timeline_once(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    post(client, webhook_path, batch("wamid.1", "wamid.2"))
    post(client, webhook_path, batch("wamid.1"))  # Meta resends
    tidings.make_worker().run_once()
    tidings.make_worker().run_once()
    (contact,) = contacts(client, tenant)
    assert (contact["phone"], contact["name"], contact["country"]) == (
        "+85291234567",
        "陳大文",
        "HK",
    )
    assert contact["lead_source"] == "whatsapp"
    assert contact["external_ids"] == {"whatsapp": "85291234567"}
    messages = timeline(client, tenant, contact["id"])
    assert sorted(m["properties"]["wamid"] for m in messages) == ["wamid.1", "wamid.2"]
    assert messages[0]["properties"]["text"] == "幾錢?"


def test_an_existing_contact_is_matched_by_phone_and_keeps_the_name_an_agent_gave_it(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    known = client.post(
        f"{API}/contacts",
        json={"phone": "+852 9123 4567", "name": "陳生 (VIP)"},
        headers=tenant.headers(),
    ).json()
    post(client, webhook_path, batch("wamid.9"))
    tidings.make_worker().run_once()
    (contact,) = contacts(client, tenant)
    assert contact["id"] == known["id"] and contact["name"] == "陳生 (VIP)"
    assert contact["lead_source"] is None  # not a new lead


def test_an_ad_click_records_the_lead_source_and_a_username_user_needs_no_phone(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    body = batch("wamid.ad")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"] = [
        {"profile": {"name": "Ploy", "username": "ploy.s"}, "user_id": "TH.99887766"}
    ]
    message = value["messages"][0]
    del message["from"]
    message |= {
        "from_user_id": "TH.99887766",
        "referral": {"source_type": "ad", "source_id": "120226305854810726", "headline": "10% off"},
    }
    post(client, webhook_path, body)
    tidings.make_worker().run_once()
    (contact,) = contacts(client, tenant)
    assert contact["phone"] is None and contact["external_ids"] == {"whatsapp_bsuid": "TH.99887766"}
    assert (contact["name"], contact["lead_source"]) == ("Ploy", "ad_referral")
    (entry,) = timeline(client, tenant, contact["id"])
    assert entry["properties"]["referral"]["source_id"] == "120226305854810726"


def test_a_status_for_a_message_we_never_sent_is_retried_then_kept_with_its_reason(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    """It may overtake the record of its send; if no such message ever appears (sent from
    another tool), it is given up after a few minutes, visibly, touching no contact."""
    post(client, webhook_path, batch(statuses=(("wamid.out", "delivered"),)))
    assert tidings.make_worker().run_once() == 2  # the kept POST, then its one update
    assert contacts(client, tenant) == []
    assert tidings.make_worker().run_once() == 0  # waits for its retry time
    for _ in range(MAX_ATTEMPTS):
        clock.advance(timedelta(minutes=10))
        tidings.make_worker().run_once()
    with tidings.db.reading() as session:
        attempts, done, error = session.execute(
            text("SELECT attempts, processed_at, last_error FROM whatsapp_inbound_events")
        ).one()
    assert attempts == MAX_ATTEMPTS and done is not None and "wamid.out" in error


def test_the_profile_name_fills_first_and_last_name_in_any_script_never_over_a_persons(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """Greeting by first name works for a Thai or Chinese customer too; what an agent typed
    stays."""
    kept = client.post(
        f"{API}/contacts",
        json={"phone": "+66 81 234 5678", "first_name": "Khun Nok"},
        headers=tenant.headers(),
    ).json()
    body = batch("wamid.hk", "wamid.th")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"] = [
        {"profile": {"name": "陳大文"}, "wa_id": "85291234567"},
        {"profile": {"name": "สมชาย ใจดี"}, "wa_id": "66812345678"},
    ]
    value["messages"][1]["from"] = "66812345678"
    post(client, webhook_path, body)
    tidings.make_worker().run_once()
    found = {c["phone"]: c for c in contacts(client, tenant)}
    hong_kong, thai = found["+85291234567"], found["+66812345678"]
    assert (hong_kong["name"], hong_kong["first_name"], hong_kong["last_name"]) == (
        "陳大文",
        "陳大文",
        None,
    )
    assert thai["id"] == kept["id"]
    assert (thai["name"], thai["first_name"], thai["last_name"]) == (
        "สมชาย ใจดี",
        "Khun Nok",
        "ใจดี",
    )
