"""The HubSpot connector end to end (X2, X3), against the local HubSpot: contacts pulled and
linked, a change made here pushed in the next worker pass (real time), the chat history
pushed as notes on the contact, no echo of what came from HubSpot, a change made in HubSpot
pulled on the 15-minute schedule, and failures retried every five minutes three times, then
logged and passed over."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_automation_rules import says
from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant
from tests.fake_hubspot import TOKEN, FakeHubSpot
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock

API = "/api/v1"
MAPPING = {
    "contact": [
        {"source": "firstname", "target": "first_name"},
        {"source": "lastname", "target": "last_name"},
        {"source": "email", "target": "email"},
        {"source": "phone", "target": "phone"},
        {
            "source": "customer_level",
            "target": "custom_fields.level",
            "default": "new customer",
            "normalise": "map",
            "values": {"VIP": "gold", "New": "new customer"},
        },
    ]
}


@pytest.fixture
def hubspot(tidings: Tidings, clock: VirtualClock) -> FakeHubSpot:
    fake = FakeHubSpot(clock.now)
    tidings.crm_transport = fake.transport()
    return fake


def connect(client: TestClient, tenant: Tenant) -> None:
    headers = tenant.headers()
    field = {"key": "level", "type": "choice", "choices": ["new customer", "gold"]}
    assert client.post(f"{API}/custom-fields", json=field, headers=headers).status_code == 201
    created = client.post(
        f"{API}/connectors",
        json={"name": "hubspot", "kind": "hubspot", "mapping": MAPPING},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    token = client.put(f"{API}/connectors/hubspot/token", json={"token": TOKEN}, headers=headers)
    assert token.status_code == 204, token.text


def worker_pass(tidings: Tidings, passes: int = 1) -> None:
    worker = tidings.make_worker()
    worker.periodic = []
    assert isinstance(tidings.clock, VirtualClock)
    for _ in range(passes):
        worker.run_once()
        tidings.clock.advance(timedelta(seconds=3))


def contact_by_email(client: TestClient, tenant: Tenant, email: str) -> dict[str, Any]:
    page = client.get(f"{API}/contacts", params={"q": email}, headers=tenant.headers()).json()
    [found] = [c for c in page["items"] if c["email"] == email]
    return found


def calls_to(fake: FakeHubSpot, path: str) -> list[dict[str, Any]]:
    return [body for called, body in fake.calls if called.endswith(path)]


def test_contacts_both_ways_in_real_time_and_chat_history_as_notes(
    client: TestClient,
    tenant: Tenant,
    tidings: Tidings,
    hubspot: FakeHubSpot,
    clock: VirtualClock,
    webhook_path: str,
) -> None:
    headers = tenant.headers()
    existing = client.post(
        f"{API}/contacts",
        json={"phone": "+66811111111", "email": "somchai@example.th", "name": "Somchai"},
        headers=headers,
    ).json()
    somchai = hubspot.add_contact(
        email="somchai@example.th", firstname="Somchai", lastname="Jaidee", customer_level="VIP"
    )
    malee = hubspot.add_contact(email="malee@example.th", firstname="Malee", lastname="Suksai")
    connect(client, tenant)

    worker_pass(tidings)  # the first pass pulls everything
    linked = client.get(f"{API}/contacts/{existing['id']}", headers=headers).json()
    assert linked["external_ids"] == {"hubspot": somchai}  # matched by e-mail, not duplicated
    assert linked["last_name"] == "Jaidee" and linked["custom_fields"] == {"level": "gold"}
    new = contact_by_email(client, tenant, "malee@example.th")
    assert new["external_ids"] == {"hubspot": malee}
    assert new["custom_fields"] == {"level": "new customer"}  # the default for an empty level
    assert calls_to(hubspot, "/batch/update") == []  # what came from HubSpot is not sent back
    assert calls_to(hubspot, "/batch/upsert") == []

    # An agent changes a name here: it goes out within seconds (real time; on PostgreSQL the
    # timeline is read two seconds behind, since ids may commit out of order).
    client.patch(
        f"{API}/contacts/{existing['id']}", json={"first_name": "Somchai K."}, headers=headers
    )
    worker_pass(tidings, 2)
    [update] = calls_to(hubspot, "/batch/update")
    assert update["inputs"][0]["id"] == somchai
    assert update["inputs"][0]["properties"]["firstname"] == "Somchai K."
    assert update["inputs"][0]["properties"]["customer_level"] == "VIP"  # mapped back
    assert hubspot.contacts[somchai]["properties"]["firstname"] == "Somchai K."

    # A contact made here with an e-mail is created in HubSpot by upsert.
    client.post(
        f"{API}/contacts", json={"email": "nok@example.th", "first_name": "Nok"}, headers=headers
    )
    worker_pass(tidings, 2)
    [upsert] = calls_to(hubspot, "/batch/upsert")
    assert upsert["inputs"][0] == {
        "idProperty": "email",
        "id": "nok@example.th",
        "properties": {"firstname": "Nok", "email": "nok@example.th"},
    }
    nok = contact_by_email(client, tenant, "nok@example.th")
    assert nok["external_ids"]["hubspot"] in hubspot.contacts

    # The customer writes on WhatsApp: the message goes to HubSpot as a note on the contact.
    assert (
        post(client, webhook_path, says(tidings, "ยังมีสีดำไหมครับ", wa_id="66811111111")).status_code
        == 200
    )
    worker_pass(tidings, 2)
    [note] = hubspot.notes
    assert note["contact"] == somchai
    assert note["hs_note_body"] == "Customer on WhatsApp: ยังมีสีดำไหมครับ"

    # Someone edits Malee in HubSpot and writes a note on her: both come at the next
    # 15-minute pull; our own note on Somchai does not come back.
    clock.advance(timedelta(minutes=1))
    hubspot.edit_contact(malee, lastname="Suksai-Wong")
    hubspot.add_note(malee, "Called her: wants the blue one in M")
    worker_pass(tidings)
    assert contact_by_email(client, tenant, "malee@example.th")["last_name"] == "Suksai"
    clock.advance(timedelta(minutes=15))
    worker_pass(tidings)
    malee_here = contact_by_email(client, tenant, "malee@example.th")
    assert malee_here["last_name"] == "Suksai-Wong"
    events = client.get(f"{API}/contacts/{malee_here['id']}/events", headers=headers).json()
    notes = [e for e in events["items"] if e["type"] == "crm.note"]
    assert [n["properties"]["body"] for n in notes] == ["Called her: wants the blue one in M"]
    own = client.get(f"{API}/contacts/{existing['id']}/events", headers=headers).json()
    assert not [e for e in own["items"] if e["type"] == "crm.note"]

    health = client.get(f"{API}/connectors/hubspot/health", headers=headers).json()
    assert health["received"] >= 4 and health["error_rate"] == 0.0
    assert health["success_rate"] == 1.0
    assert health["backlog"]["contacts_waiting"] == 0 and health["backlog"]["retrying"] == []


def test_failures_are_retried_every_five_minutes_three_times_then_logged(
    client: TestClient, tenant: Tenant, tidings: Tidings, hubspot: FakeHubSpot, clock: VirtualClock
) -> None:
    headers = tenant.headers()
    connect(client, tenant)
    worker_pass(tidings)  # the first pull (nothing there yet)
    contact = client.post(
        f"{API}/contacts", json={"email": "a@example.th", "first_name": "A"}, headers=headers
    ).json()
    hubspot.failing["/batch/upsert"] = [503]
    worker_pass(tidings, 2)
    assert calls_to(hubspot, "/batch/upsert") == [
        {
            "inputs": [
                {
                    "idProperty": "email",
                    "id": "a@example.th",
                    "properties": {"firstname": "A", "email": "a@example.th"},
                }
            ]
        }
    ]
    assert hubspot.contacts == {}
    worker_pass(tidings)  # within the five minutes: no new attempt
    assert len(calls_to(hubspot, "/batch/upsert")) == 1
    clock.advance(timedelta(minutes=5))
    worker_pass(tidings)
    assert len(hubspot.contacts) == 1  # the retry went through
    assert client.get(f"{API}/contacts/{contact['id']}", headers=headers).json()["external_ids"]

    # Down for good: the first attempt and three retries, then the error log, and on.
    client.patch(f"{API}/contacts/{contact['id']}", json={"first_name": "B"}, headers=headers)
    hubspot.failing["/batch/update"] = [503, 503, 503, 503]
    worker_pass(tidings, 2)
    for _ in range(3):
        clock.advance(timedelta(minutes=5))
        worker_pass(tidings)
    errors = client.get(f"{API}/connectors/hubspot/errors", headers=headers).json()
    assert any("given up after 4 attempts" in e["reason"] for e in errors)
    client.patch(f"{API}/contacts/{contact['id']}", json={"first_name": "C"}, headers=headers)
    worker_pass(tidings, 2)  # the next change goes out: the sync did not stop
    [*_, last] = calls_to(hubspot, "/batch/update")
    assert last["inputs"][0]["properties"]["firstname"] == "C"
