"""Contacts through the REST API, as a client application uses them (C1, C2, X1)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tidings.kernel.clock import VirtualClock
from tidings.workspaces.domain import Role

API = "/api/v1"


def create(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/contacts", json=body, headers=tenant.headers())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_local_number_is_stored_in_e164_with_its_country(
    client: TestClient, tenant: Tenant
) -> None:
    contact = create(
        client, tenant, name="林怡君", phone="0912 345 678", email="Yi.Jun@Example.com"
    )
    assert contact["phone"] == "+886912345678"
    assert contact["country"] == "TW"
    assert contact["email"] == "yi.jun@example.com"
    assert contact["created_at"].endswith("Z") and len(contact["created_at"]) == 24  # ms precision


def test_bad_input_gets_a_422_naming_the_field_and_stores_nothing(
    client: TestClient, tenant: Tenant
) -> None:
    cases = [
        ({"phone": "12345"}, "phone", "invalid_phone"),
        ({"email": "not-an-address"}, "email", "invalid_email"),
        ({"timezone": "Asia/Nowhere"}, "timezone", "invalid_timezone"),
        ({"custom_fields": {"ghost": 1}}, "custom_fields.ghost", "unknown_field"),
        ({"score": "many"}, "score", "invalid_request"),
        ({"colour": "red"}, "colour", "invalid_request"),
        ({"phone": "0912345678", "tags": ["  "]}, "tags", "invalid_tag"),
    ]
    for body, field, code in cases:
        response = client.post(f"{API}/contacts", json=body, headers=tenant.headers())
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert (error["field"], error["code"]) == (field, code), body
    assert client.get(f"{API}/contacts", headers=tenant.headers()).json()["items"] == []


def test_the_same_phone_cannot_belong_to_two_contacts(client: TestClient, tenant: Tenant) -> None:
    create(client, tenant, phone="+886912345678")
    response = client.post(
        f"{API}/contacts", json={"phone": "0912345678"}, headers=tenant.headers()
    )
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "phone"


def test_custom_fields_are_typed_and_searchable(client: TestClient, tenant: Tenant) -> None:
    definition = {"key": "level", "label": "Level", "type": "choice", "choices": ["gold", "silver"]}
    assert (
        client.post(f"{API}/custom-fields", json=definition, headers=tenant.headers()).status_code
        == 201
    )
    client.post(
        f"{API}/custom-fields", json={"key": "spent", "type": "number"}, headers=tenant.headers()
    )
    gold = create(
        client, tenant, phone="0912000001", custom_fields={"level": "gold", "spent": "1,200"}
    )
    create(client, tenant, phone="0912000002", custom_fields={"level": "silver"})
    assert gold["custom_fields"] == {"level": "gold", "spent": 1200.0}
    bad = client.post(
        f"{API}/contacts",
        json={"phone": "0912000003", "custom_fields": {"level": "bronze"}},
        headers=tenant.headers(),
    )
    assert bad.json()["error"]["field"] == "custom_fields.level"
    found = client.get(f"{API}/contacts", params={"field.level": "gold"}, headers=tenant.headers())
    assert [c["id"] for c in found.json()["items"]] == [gold["id"]]
    found = client.get(f"{API}/contacts", params={"field.spent": "1200"}, headers=tenant.headers())
    assert [c["id"] for c in found.json()["items"]] == [gold["id"]]


def test_search_by_phone_tag_text_and_list_with_cursor_pages(
    client: TestClient, tenant: Tenant
) -> None:
    newsletter = client.post(
        f"{API}/lists", json={"name": "Newsletter"}, headers=tenant.headers()
    ).json()
    ids = []
    for n in range(7):
        contact = create(
            client,
            tenant,
            name=f"สมชาย {n}",
            phone=f"09120000{n:02d}",
            tags=["vip"] if n % 2 else ["new"],
            list_ids=[newsletter["id"]] if n < 3 else [],
        )
        ids.append(contact["id"])
    by_phone = client.get(
        f"{API}/contacts", params={"phone": "0912-0000-03"}, headers=tenant.headers()
    )
    assert [c["id"] for c in by_phone.json()["items"]] == [ids[3]]
    by_tag = client.get(f"{API}/contacts", params={"tag": "VIP"}, headers=tenant.headers())
    assert sorted(c["id"] for c in by_tag.json()["items"]) == [ids[1], ids[3], ids[5]]
    by_text = client.get(f"{API}/contacts", params={"q": "สมชาย 4"}, headers=tenant.headers())
    assert [c["id"] for c in by_text.json()["items"]] == [ids[4]]
    by_list = client.get(
        f"{API}/contacts", params={"list_id": newsletter["id"]}, headers=tenant.headers()
    )
    assert sorted(c["id"] for c in by_list.json()["items"]) == ids[:3]
    seen, cursor = [], None
    while True:
        page = client.get(
            f"{API}/contacts",
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
            headers=tenant.headers(),
        ).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    bad = client.get(f"{API}/contacts", params={"cursor": "garbage!"}, headers=tenant.headers())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


def test_upsert_finds_by_external_id_phone_or_email_and_refuses_ambiguity(
    client: TestClient, tenant: Tenant
) -> None:
    first = client.post(
        f"{API}/contacts/upsert",
        json={"phone": "0912345678", "name": "A", "external_ids": {"hubspot": "501"}},
        headers=tenant.headers(),
    ).json()
    assert first["created"] is True
    again = client.post(
        f"{API}/contacts/upsert",
        json={"phone": "+886 912 345 678", "name": "A. Lin"},
        headers=tenant.headers(),
    ).json()
    assert again["created"] is False and again["contact"]["id"] == first["contact"]["id"]
    assert again["contact"]["name"] == "A. Lin"
    by_external = client.post(
        f"{API}/contacts/upsert",
        json={"external_ids": {"hubspot": "501"}, "email": "a@lin.example"},
        headers=tenant.headers(),
    ).json()
    assert by_external["contact"]["id"] == first["contact"]["id"]
    other = create(client, tenant, email="other@lin.example")
    clash = client.post(
        f"{API}/contacts/upsert",
        json={"phone": "0912345678", "email": "other@lin.example"},
        headers=tenant.headers(),
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "ambiguous_match"
    assert other["id"] != first["contact"]["id"]


def test_update_changes_only_what_is_sent_and_moves_updated_at_only_on_change(
    client: TestClient, tenant: Tenant, clock: VirtualClock
) -> None:
    from datetime import timedelta

    contact = create(client, tenant, name="Mei", phone="0912345678", locale="zh-Hant-TW")
    clock.advance(timedelta(seconds=5))
    same = client.patch(
        f"{API}/contacts/{contact['id']}", json={"name": "Mei"}, headers=tenant.headers()
    )
    assert same.json()["updated_at"] == contact["updated_at"]
    clock.advance(timedelta(seconds=5))
    changed = client.patch(
        f"{API}/contacts/{contact['id']}",
        json={"lifecycle_stage": "customer"},
        headers=tenant.headers(),
    ).json()
    assert changed["lifecycle_stage"] == "customer" and changed["locale"] == "zh-Hant-TW"
    assert changed["updated_at"] > contact["updated_at"]


def test_tags_lists_and_consent_are_recorded_on_the_timeline(
    client: TestClient, tenant: Tenant
) -> None:
    contact = create(client, tenant, phone="0912345678")
    cid = contact["id"]
    tagged = client.post(
        f"{API}/contacts/{cid}/tags",
        json={"tags": ["VIP", "vip", "ad-lead"]},
        headers=tenant.headers(),
    )
    assert sorted(tagged.json()["tags"]) == ["VIP", "ad-lead"]
    client.delete(f"{API}/contacts/{cid}/tags/ad-lead", headers=tenant.headers())
    consent = client.put(
        f"{API}/contacts/{cid}/consents",
        json={
            "channel": "whatsapp",
            "purpose": "marketing",
            "status": "opted_in",
            "source": "form",
        },
        headers=tenant.headers(),
    ).json()
    assert consent["consents"][0]["status"] == "opted_in"
    client.put(
        f"{API}/contacts/{cid}/consents",
        json={
            "channel": "whatsapp",
            "purpose": "marketing",
            "status": "opted_out",
            "source": "inbound",
        },
        headers=tenant.headers(),
    )
    events = client.get(f"{API}/contacts/{cid}/events", headers=tenant.headers()).json()["items"]
    kinds = [e["type"] for e in reversed(events)]
    assert kinds == [
        "contact.created",
        "tag.added",
        "tag.added",
        "tag.removed",
        "consent.changed",
        "consent.changed",
    ]
    assert events[0]["properties"]["previous"] == "opted_in"
    tags = client.get(f"{API}/tags", headers=tenant.headers()).json()
    assert {t["name"]: t["contacts"] for t in tags} == {"VIP": 1, "ad-lead": 0}


def test_events_keep_event_time_and_are_stored_once_per_idempotency_key(
    client: TestClient, tenant: Tenant
) -> None:
    cid = create(client, tenant, phone="0912345678")["id"]
    body = {
        "type": "order.placed",
        "occurred_at": "2026-11-20T08:30:00.250Z",
        "properties": {"sku": "APL-IP15PM", "amount": 38900},
        "idempotency_key": "shopify:1001",
    }
    first = client.post(f"{API}/contacts/{cid}/events", json=body, headers=tenant.headers())
    second = client.post(f"{API}/contacts/{cid}/events", json=body, headers=tenant.headers())
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["occurred_at"] == "2026-11-20T08:30:00.250Z"
    orders = client.get(
        f"{API}/contacts/{cid}/events", params={"type": "order.placed"}, headers=tenant.headers()
    )
    assert len(orders.json()["items"]) == 1
    future = client.post(
        f"{API}/contacts/{cid}/events",
        json={"type": "x", "occurred_at": "2030-01-01T00:00:00Z"},
        headers=tenant.headers(),
    )
    assert future.status_code == 422 and future.json()["error"]["field"] == "occurred_at"
    spaced = client.post(
        f"{API}/contacts/{cid}/events", json={"type": "order placed"}, headers=tenant.headers()
    )
    assert spaced.json()["error"]["field"] == "type"


def test_agents_work_contacts_but_only_admins_delete_them(
    client: TestClient, tenant: Tenant
) -> None:
    cid = create(client, tenant, phone="0912345678")["id"]
    agent = client.delete(f"{API}/contacts/{cid}", headers=tenant.headers(Role.AGENT))
    assert agent.status_code == 403 and agent.json()["error"]["code"] == "forbidden"
    assert (
        client.patch(
            f"{API}/contacts/{cid}", json={"score": 5}, headers=tenant.headers(Role.AGENT)
        ).status_code
        == 200
    )
    assert (
        client.delete(f"{API}/contacts/{cid}", headers=tenant.headers(Role.ADMIN)).status_code
        == 204
    )
    assert client.get(f"{API}/contacts/{cid}", headers=tenant.headers()).status_code == 404


def test_an_external_id_can_be_changed_and_found_again(client: TestClient, tenant: Tenant) -> None:
    contact = create(client, tenant, phone="0912345678", external_ids={"hubspot": "501"})
    moved = client.patch(
        f"{API}/contacts/{contact['id']}",
        json={"external_ids": {"hubspot": "777"}},
        headers=tenant.headers(),
    )
    assert moved.json()["external_ids"] == {"hubspot": "777"}
    found = client.post(
        f"{API}/contacts/upsert",
        json={"external_ids": {"hubspot": "777"}, "name": "Found"},
        headers=tenant.headers(),
    ).json()
    assert found["created"] is False and found["contact"]["id"] == contact["id"]
