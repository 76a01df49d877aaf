"""CRM sync end to end (C4, C5, X2's incoming half): a connector's field mapping with defaults
and normalisation, a mapping error log with its error rate, conflicts judged per field on
millisecond timestamps (an older upsert loses and waits for review, which can accept or
revert), stale records, orders onto the timeline with SKUs, custom objects."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock

API = "/api/v1"
MAPPING = {
    "contact": [
        {"source": "full_name", "target": "name"},
        {"source": "mobile", "target": "phone"},
        {"source": "mail", "target": "email"},
        {
            "source": "customer_level",
            "target": "custom_fields.level",
            "default": "new customer",
            "normalise": "map",
            "values": {"VIP": "gold", "Regular": "silver", "new customer": "new customer"},
        },
        {"source": "favourite_product", "target": "custom_fields.favourite", "normalise": "sku"},
        {"source": "labels", "target": "tags"},
    ]
}


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup(client: TestClient, tenant: Tenant) -> None:
    headers = tenant.headers()
    for field in (
        {"key": "level", "type": "choice", "choices": ["new customer", "gold", "silver"]},
        {"key": "favourite", "type": "text"},
    ):
        assert client.post(f"{API}/custom-fields", json=field, headers=headers).status_code == 201
    product = {"sku": "APL-IP15PM", "name": "iPhone 15 Pro Max", "aliases": ["iPhone15 Pro Max"]}
    assert client.post(f"{API}/products", json=product, headers=headers).status_code == 201
    answer = client.post(
        f"{API}/connectors", json={"name": "hubspot", "mapping": MAPPING}, headers=headers
    )
    assert answer.status_code == 201, answer.text


def push(
    client: TestClient, tenant: Tenant, records: list[Any], kind: str = "contacts"
) -> dict[str, Any]:
    answer = client.post(
        f"{API}/connectors/hubspot/{kind}", json={"records": records}, headers=tenant.headers()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def contact(client: TestClient, tenant: Tenant, contact_id: int) -> dict[str, Any]:
    found: dict[str, Any] = client.get(
        f"{API}/contacts/{contact_id}", headers=tenant.headers()
    ).json()
    return found


def test_mapping_defaults_normalisation_and_the_error_log(
    client: TestClient, tenant: Tenant, clock: VirtualClock
) -> None:
    setup(client, tenant)
    at = iso(clock.now() - timedelta(hours=1))
    report = push(
        client,
        tenant,
        [
            {
                "external_id": "101",
                "updated_at": at,
                "fields": {
                    "full_name": "Somchai Jaidee",
                    "mobile": "+66 81 234 5678",
                    "customer_level": "VIP",
                    "favourite_product": "iPhone15 Pro Max",
                    "labels": "hubspot, lead",
                },
            },
            {
                "external_id": "102",
                "updated_at": at,
                "fields": {"full_name": "Nok", "customer_level": ""},
            },
            {
                "external_id": "103",
                "updated_at": at,
                "fields": {"full_name": "Bad Phone", "mobile": "12", "favourite_product": "Galaxy"},
            },
            {"external_id": "104", "fields": {"full_name": "No time"}},
            {"external_id": "105", "updated_at": "yesterday", "fields": {}},
            "not an object",
        ],
    )
    assert (report["received"], report["created"], report["rejected"]) == (6, 3, 3)
    first, second, third = (contact(client, tenant, r["local_id"]) for r in report["results"][:3])
    assert first["name"] == "Somchai Jaidee" and first["phone"] == "+66812345678"
    assert first["custom_fields"] == {"level": "gold", "favourite": "APL-IP15PM"}
    assert first["external_ids"] == {"hubspot": "101"}
    assert set(first["tags"]) == {"hubspot", "lead"}
    assert second["custom_fields"] == {"level": "new customer"}  # the default, not skipped
    assert third["name"] == "Bad Phone" and third["phone"] is None  # the rest of it went in
    assert third["custom_fields"] == {"level": "new customer"}
    problems = {(r["position"], e["field"]) for r in report["results"] for e in r["errors"]}
    assert problems == {
        (3, "mobile"),
        (3, "favourite_product"),
        (4, "updated_at"),
        (5, "updated_at"),
        (6, None),
    }
    log = client.get(f"{API}/connectors/hubspot/errors", headers=tenant.headers()).json()
    assert {(e["position"], e["field"]) for e in log} == problems
    assert any("Galaxy" in e["reason"] for e in log)
    health = client.get(f"{API}/connectors/hubspot/health", headers=tenant.headers()).json()
    assert (health["received"], health["with_errors"], health["error_rate"]) == (6, 4, 0.6667)


def test_an_older_upsert_loses_and_waits_for_review_per_field_on_milliseconds(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock
) -> None:
    setup(client, tenant)
    t0 = clock.now() - timedelta(minutes=10)
    created = push(
        client,
        tenant,
        [
            {
                "external_id": "7",
                "updated_at": iso(t0),
                "fields": {"full_name": "Somchai", "mail": "a@x.th"},
            }
        ],
    )
    contact_id = created["results"][0]["local_id"]
    # An agent corrects the name here, now (T2).
    edited = client.patch(
        f"{API}/contacts/{contact_id}", json={"name": "Somchai K."}, headers=tenant.headers()
    )
    assert edited.status_code == 200
    edited_at = clock.now()

    # The CRM changed the name too, but at T1, one millisecond before our edit: it loses.
    older = push(
        client,
        tenant,
        [
            {
                "external_id": "7",
                "updated_at": iso(edited_at - timedelta(milliseconds=1)),
                "fields": {"full_name": "Somchai Jaidee", "mail": "a@x.th"},
            }
        ],
    )
    assert older["results"][0]["conflicts"] == 1
    assert contact(client, tenant, contact_id)["name"] == "Somchai K."
    [queued] = client.get(f"{API}/sync/conflicts", headers=tenant.headers()).json()
    assert (queued["field"], queued["ours"], queued["theirs"], queued["winner"]) == (
        "name",
        "Somchai K.",
        "Somchai Jaidee",
        "ours",
    )

    # A person decides the CRM was right after all.
    reverted = client.post(f"{API}/sync/conflicts/{queued['id']}/revert", headers=tenant.headers())
    assert reverted.status_code == 200 and reverted.json()["state"] == "reverted"
    assert contact(client, tenant, contact_id)["name"] == "Somchai Jaidee"
    again = client.post(f"{API}/sync/conflicts/{queued['id']}/accept", headers=tenant.headers())
    assert again.status_code == 409

    # Only the CRM changed the e-mail since: it is taken, with no review.
    clock.advance(timedelta(minutes=1))
    quiet = push(
        client,
        tenant,
        [
            {
                "external_id": "7",
                "updated_at": iso(clock.now()),
                "fields": {"full_name": "Somchai Jaidee", "mail": "somchai@x.th"},
            }
        ],
    )
    assert (quiet["results"][0]["outcome"], quiet["results"][0]["conflicts"]) == ("updated", 0)
    assert contact(client, tenant, contact_id)["email"] == "somchai@x.th"

    # Both change the name again; the CRM's is one millisecond newer: it wins, ours is queued.
    clock.advance(timedelta(minutes=1))
    client.patch(f"{API}/contacts/{contact_id}", json={"name": "คุณสมชาย"}, headers=tenant.headers())
    newer = push(
        client,
        tenant,
        [
            {
                "external_id": "7",
                "updated_at": iso(clock.now() + timedelta(milliseconds=1)),
                "fields": {"full_name": "Somchai J.", "mail": "somchai@x.th"},
            }
        ],
    )
    assert newer["results"][0]["conflicts"] == 1
    assert contact(client, tenant, contact_id)["name"] == "Somchai J."
    [overwritten] = client.get(f"{API}/sync/conflicts", headers=tenant.headers()).json()
    assert (overwritten["ours"], overwritten["winner"]) == ("คุณสมชาย", "theirs")
    accepted = client.post(
        f"{API}/sync/conflicts/{overwritten['id']}/accept", headers=tenant.headers()
    )
    assert accepted.json()["state"] == "accepted"

    # The CRM resends an old version (out of order): stale, changes nothing, queued.
    stale = push(
        client,
        tenant,
        [{"external_id": "7", "updated_at": iso(t0), "fields": {"full_name": "Somchai"}}],
    )
    assert (stale["stale"], stale["conflicts"]) == (1, 1)
    assert contact(client, tenant, contact_id)["name"] == "Somchai J."
    history = client.get(
        f"{API}/sync/conflicts",
        params={"state": None, "contact_id": contact_id},
        headers=tenant.headers(),
    ).json()
    assert len(history) >= 1


def test_orders_reach_the_timeline_with_skus_and_custom_objects_are_kept(
    client: TestClient, tenant: Tenant, clock: VirtualClock
) -> None:
    setup(client, tenant)
    placed = clock.now() - timedelta(hours=2)
    order = {
        "external_id": "SO-1001",
        "updated_at": iso(placed),
        "contact": {"phone": "+66812345678"},
        "status": "placed",
        "total": "48900",
        "currency": "THB",
        "items": [{"name": "iPhone15 Pro Max", "quantity": 1, "price": "48900"}],
    }
    first = push(client, tenant, [order], "orders")
    assert first["created"] == 1
    contact_id = first["results"][0]["local_id"]
    shipped = {
        **order,
        "updated_at": iso(placed + timedelta(hours=1)),
        "status": "shipped",
        "carrier": "Kerry",
        "tracking_url": "https://th.kerryexpress.com/track/?track=KEX123",
    }
    assert push(client, tenant, [shipped], "orders")["updated"] == 1
    events = client.get(f"{API}/contacts/{contact_id}/events", headers=tenant.headers()).json()
    kinds = [e["type"] for e in events["items"]]
    assert "order.placed" in kinds and "order.shipped" in kinds
    stored = client.get(
        f"{API}/connectors/hubspot/objects/order/SO-1001", headers=tenant.headers()
    ).json()
    assert stored["values"]["skus"] == ["APL-IP15PM"]
    assert stored["values"]["status"] == "shipped"
    late = push(client, tenant, [{**order, "status": "paid"}], "orders")  # older than shipped
    assert (late["stale"], late["conflicts"]) == (1, 1)

    subscription = {
        "external_id": "SUB-9",
        "updated_at": iso(placed),
        "contact": {"external_id": "nobody-yet"},
        "fields": {"plan": "gold"},
    }
    refused = push(client, tenant, [subscription], "objects/subscription")
    assert refused["rejected"] == 1
    assert refused["results"][0]["errors"][0]["field"] == "contact"
    kept = push(
        client,
        tenant,
        [{**subscription, "contact": {"phone": "+66812345678"}}],
        "objects/subscription",
    )
    assert kept["created"] == 1 and kept["results"][0]["local_id"] == contact_id
    listed = client.get(
        f"{API}/connectors/hubspot/objects/subscription",
        params={"contact_id": contact_id},
        headers=tenant.headers(),
    ).json()
    assert [r["values"] for r in listed] == [{"plan": "gold"}]


def test_bad_connectors_and_batches_name_the_field_and_workspaces_stay_apart(
    client: TestClient, tenant: Tenant, tidings: Tidings
) -> None:
    headers = tenant.headers()
    cases = [
        ({"name": "Hub Spot"}, "name"),
        ({"name": "crm", "kind": "zoho-ish"}, "kind"),
        (
            {"name": "crm", "mapping": {"contact": [{"source": "x", "target": "shoe_size"}]}},
            "mapping.contact[0].target",
        ),
        (
            {
                "name": "crm",
                "mapping": {"contact": [{"source": "x", "target": "custom_fields.nope"}]},
            },
            "mapping.contact[0].target",
        ),
        (
            {
                "name": "crm",
                "mapping": {"contact": [{"source": "x", "target": "name", "normalise": "rot13"}]},
            },
            "mapping.contact[0].normalise",
        ),
    ]
    for body, field in cases:
        answer = client.post(f"{API}/connectors", json=body, headers=headers)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["field"] == field, (body, answer.json())
    setup(client, tenant)
    duplicate = client.post(f"{API}/connectors", json={"name": "hubspot"}, headers=headers)
    assert duplicate.status_code == 409
    empty = client.post(f"{API}/connectors/hubspot/contacts", json={"records": []}, headers=headers)
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "records"
    other = make_tenant(tidings, "other-shop")
    assert client.get(f"{API}/connectors/hubspot", headers=other.headers()).status_code == 404
    assert (
        client.post(
            f"{API}/connectors/hubspot/contacts",
            json={"records": [{"external_id": "1", "updated_at": "2026-11-24T00:00:00Z"}]},
            headers=other.headers(),
        ).status_code
        == 404
    )


def test_a_stale_record_shows_what_the_contact_holds_now_as_ours(
    client: TestClient, tenant: Tenant, clock: VirtualClock
) -> None:
    """Out of order, after a person edited the contact: the review queue's "ours" is the
    person's value, not the newer CRM version that came before it."""
    setup(client, tenant)
    t0 = clock.now() - timedelta(hours=2)
    newer = {"external_id": "9", "updated_at": iso(t0 + timedelta(hours=1))}
    first = push(client, tenant, [{**newer, "fields": {"full_name": "Malee", "mobile": "0899"}}])
    contact_id = first["results"][0]["local_id"]
    client.patch(f"{API}/contacts/{contact_id}", json={"name": "คุณมาลี"}, headers=tenant.headers())
    late = push(
        client,
        tenant,
        [{"external_id": "9", "updated_at": iso(t0), "fields": {"full_name": "Malee S."}}],
    )
    assert (late["stale"], late["conflicts"]) == (1, 1)
    [queued] = client.get(f"{API}/sync/conflicts", headers=tenant.headers()).json()
    assert (queued["field"], queued["ours"], queued["theirs"]) == ("name", "คุณมาลี", "Malee S.")
    assert queued["winner"] == "ours"
    assert contact(client, tenant, contact_id)["name"] == "คุณมาลี"


def upsert(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"{API}/contacts/upsert", json=body, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_api_upsert_with_its_time_never_overwrites_a_newer_change(
    client: TestClient, tenant: Tenant, clock: VirtualClock
) -> None:
    """``POST /contacts/upsert`` with ``updated_at``: the connector's rule, field by field."""
    setup(client, tenant)
    t0 = clock.now() - timedelta(hours=3)
    phone = "+66812345670"
    made = upsert(
        client,
        tenant,
        {"phone": phone, "name": "Anan", "updated_at": iso(t0), "custom_fields": {"level": "gold"}},
    )
    contact_id = made["contact"]["id"]
    assert made["created"] and made["kept"] == []

    # A person edits the name here, now; the shop's system then sends a version from before.
    client.patch(f"{API}/contacts/{contact_id}", json={"name": "คุณอนันต์"}, headers=tenant.headers())
    older = upsert(
        client,
        tenant,
        {
            "phone": phone,
            "name": "Anan K.",
            "email": "anan@example.th",
            "custom_fields": {"level": "silver"},
            "updated_at": iso(t0 + timedelta(hours=1)),
        },
    )
    assert older["kept"] == ["name"]
    held = older["contact"]
    assert held["name"] == "คุณอนันต์"  # the person's newer edit stays
    assert held["email"] == "anan@example.th"  # an empty field is always filled
    assert held["custom_fields"]["level"] == "silver"  # only set at t0: the newer version wins
    [queued] = client.get(f"{API}/sync/conflicts", headers=tenant.headers()).json()
    assert queued["connector_id"] is None and queued["winner"] == "ours"
    assert (queued["ours"], queued["theirs"]) == ("คุณอนันต์", "Anan K.")

    # Out of order between the shop's own versions: the times are the shop's, not the times
    # the versions arrived here. t0+1h set the level; a t0+30min version arrives after it.
    reordered = upsert(
        client,
        tenant,
        {
            "phone": phone,
            "custom_fields": {"level": "gold"},
            "updated_at": iso(t0 + timedelta(minutes=30)),
        },
    )
    assert reordered["kept"] == ["custom_fields.level"]
    assert reordered["contact"]["custom_fields"]["level"] == "silver"
    # A version newer than the person's edit wins, though older than the moment it arrives.
    clock.advance(timedelta(minutes=5))
    newest = upsert(
        client,
        tenant,
        {
            "phone": phone,
            "name": "Anan Kittisak",
            "updated_at": iso(clock.now() - timedelta(minutes=1)),
        },
    )
    assert newest["kept"] == [] and newest["contact"]["name"] == "Anan Kittisak"

    # Reverting from the review queue writes the kept-out value.
    reverted = client.post(f"{API}/sync/conflicts/{queued['id']}/revert", headers=tenant.headers())
    assert reverted.status_code == 200, reverted.text
    assert contact(client, tenant, contact_id)["name"] == "Anan K."

    # Without updated_at, the upsert takes every field, as before.
    plain = upsert(client, tenant, {"phone": phone, "name": "Anan"})
    assert plain["contact"]["name"] == "Anan" and plain["kept"] == []
    # A time without a zone is refused, naming the field.
    refused = client.post(
        f"{API}/contacts/upsert",
        json={"phone": phone, "updated_at": "2026-11-24T09:00:00"},
        headers=tenant.headers(),
    )
    assert refused.status_code == 422 and "updated_at" in refused.text
