"""Hostile and malformed input gets a clear 4xx naming the field, never a 500, and nothing
stored is lost or half-written: ids and integers beyond 64 bits, non-finite numbers, null
where a value is needed, times without a zone, NUL characters, absurdly deep JSON."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.db.migrate import current_revision, head_revision, upgrade

HUGE = str(2**63)  # one past the largest bigint
HUGER = "23984644701632092700672"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/contacts/{HUGE}",
        f"/api/v1/contacts/{HUGER}/send-traces",
        f"/api/v1/conversations/{HUGER}/messages",
        f"/api/v1/rules/{HUGE}/runs",
        f"/api/v1/webhooks/{HUGE}/health",
        f"/api/v1/agents/{HUGE}",
    ],
)
def test_an_id_beyond_64_bits_in_a_path_is_not_found(
    client: TestClient, tenant: Tenant, path: str
) -> None:
    answer = client.get(path, headers=tenant.headers())
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "not_found"


def test_changes_to_an_id_beyond_64_bits_are_not_found(client: TestClient, tenant: Tenant) -> None:
    headers = tenant.headers()
    assert client.patch(f"/api/v1/contacts/{HUGE}", json={}, headers=headers).status_code == 404
    assert client.delete(f"/api/v1/contacts/{HUGER}/lists/1", headers=headers).status_code == 404
    assert client.put(f"/api/v1/teams/{HUGER}/members/1", headers=headers).status_code == 404


def test_a_query_integer_beyond_64_bits_is_refused_naming_it(
    client: TestClient, tenant: Tenant
) -> None:
    answer = client.get(f"/api/v1/conversations?limit={HUGER}", headers=tenant.headers())
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "limit"


def test_a_json_integer_beyond_64_bits_is_refused_naming_the_field(
    client: TestClient, tenant: Tenant
) -> None:
    raw = '{"survivor_id": ' + HUGER + ', "merged_id": 5}'
    answer = client.post(
        "/api/v1/merges",
        content=raw,
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "survivor_id"
    nested = '{"name": "A", "custom_fields": {"points": [1, ' + HUGE + "]}}"
    answer = client.post(
        "/api/v1/contacts",
        content=nested,
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "custom_fields.points.1"


@pytest.mark.parametrize("number", ["1e309", "-1e309", "NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_is_refused_and_the_workspace_keeps_working(
    client: TestClient, tenant: Tenant, number: str
) -> None:
    raw = '{"policy": {"message_prices": {"*": {"marketing": ' + number + "}}}}"
    answer = client.patch(
        "/api/v1/workspace",
        content=raw,
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "policy.message_prices.*.marketing"
    read = client.get("/api/v1/workspace", headers=tenant.headers())
    assert read.status_code == 200
    assert read.json()["policy"]["message_prices"]["*"]["marketing"] == pytest.approx(0.0732)


def test_a_stored_policy_that_cannot_be_read_falls_back_and_is_repaired_by_the_migration(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    broken = {"message_prices": {"*": {"marketing": None}}, "promotional_per_week": 2}
    with tidings.db.engine.begin() as connection:
        connection.execute(
            text("UPDATE workspaces SET policy_overrides = :p WHERE id = :id"),
            {"p": json.dumps(broken), "id": tenant.workspace_id},
        )
    # Reads keep working: the unusable figure falls back to its default, the rest stays.
    read = client.get("/api/v1/workspace", headers=tenant.headers())
    assert read.status_code == 200, read.text
    policy = read.json()["policy"]
    assert policy["message_prices"]["*"]["marketing"] == pytest.approx(0.0732)
    assert policy["promotional_per_week"] == 2
    # The migration removes what cannot be read, and keeps the rest.
    with tidings.db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0014'"))
    upgrade(tidings.db.engine, "0015")  # the repair alone (later revisions are in place)
    assert current_revision(tidings.db.engine) == "0015"
    with tidings.db.engine.begin() as connection:
        connection.execute(
            text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()}
        )
    with tidings.db.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT policy_overrides FROM workspaces WHERE id = :id"),
            {"id": tenant.workspace_id},
        ).scalar_one()
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == {"promotional_per_week": 2}


@pytest.mark.parametrize("field", ["name", "timezone", "locale", "default_region", "policy"])
def test_null_for_a_field_that_needs_a_value_is_refused_naming_it(
    client: TestClient, tenant: Tenant, field: str
) -> None:
    answer = client.patch("/api/v1/workspace", json={field: None}, headers=tenant.headers())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert client.get("/api/v1/workspace", headers=tenant.headers()).json()[field] is not None


def test_null_in_an_email_template_change_is_refused_except_for_the_text_part(
    client: TestClient, tenant: Tenant
) -> None:
    created = client.post(
        "/api/v1/email/templates",
        json={"name": "Welcome", "subject": "Hi", "html": "<p>Hi {{ first_name }}</p>"},
        headers=tenant.headers(),
    )
    assert created.status_code == 201, created.text
    path = f"/api/v1/email/templates/{created.json()['id']}"
    for field in ("name", "subject", "html"):
        answer = client.patch(path, json={field: None}, headers=tenant.headers())
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field
    assert client.patch(path, json={"text": None}, headers=tenant.headers()).status_code == 200


@pytest.mark.parametrize(
    ("occurred_at", "why"),
    [
        ("2026-11-22T14:00:00", "time zone"),
        ("0001-01-01T00:00:00+14:00", "years"),
    ],
)
def test_a_time_without_a_zone_or_out_of_range_is_refused_naming_the_field(
    client: TestClient, tenant: Tenant, occurred_at: str, why: str
) -> None:
    contact = client.post("/api/v1/contacts", json={"name": "Lin"}, headers=tenant.headers())
    answer = client.post(
        f"/api/v1/contacts/{contact.json()['id']}/events",
        json={"type": "order.placed", "occurred_at": occurred_at},
        headers=tenant.headers(),
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "occurred_at"
    assert why in answer.json()["error"]["message"]


def test_a_nul_character_in_any_text_is_refused_on_either_database(
    client: TestClient, tenant: Tenant
) -> None:
    headers = tenant.headers()
    body = client.post("/api/v1/contacts", json={"name": "Chen\x00Yi"}, headers=headers)
    assert body.status_code == 422
    assert body.json()["error"]["field"] == "name"
    key = client.post(
        "/api/v1/contacts", json={"name": "Chen", "custom_fields": {"a\x00b": 1}}, headers=headers
    )
    assert key.status_code == 422
    query = client.get("/api/v1/contacts", params={"q": "Chen\x00"}, headers=headers)
    assert query.status_code == 422 and query.json()["error"]["field"] == "q"
    assert client.get("/api/v1/contacts", headers=headers).json()["items"] == []


def test_json_nested_absurdly_deep_is_refused(client: TestClient, tenant: Tenant) -> None:
    deep = '{"name": "A", "custom_fields": {"x": ' + "[" * 100 + "]" * 100 + "}}"
    answer = client.post(
        "/api/v1/contacts",
        content=deep,
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert "nested deeper" in answer.json()["error"]["message"]


def test_an_oversized_condition_is_refused_with_the_limit(
    client: TestClient, tenant: Tenant
) -> None:
    condition = {"any": [{"has_tag": f"t{i}"} for i in range(500)]}
    answer = client.post(
        "/api/v1/segments/count", json={"condition": condition}, headers=tenant.headers()
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "condition_too_large" and "200" in error["message"]
    small = {"any": [{"has_tag": f"t{i}"} for i in range(20)]}
    counted = client.post(
        "/api/v1/segments/count", json={"condition": small}, headers=tenant.headers()
    )
    assert counted.status_code == 200, counted.text


def test_event_properties_custom_fields_and_notes_have_size_caps(
    client: TestClient, tenant: Tenant
) -> None:
    headers = tenant.headers()
    contact = client.post("/api/v1/contacts", json={"name": "Lin"}, headers=headers).json()
    events = f"/api/v1/contacts/{contact['id']}/events"
    big = {"type": "product.viewed", "properties": {"blob": "x" * 20_000}}
    answer = client.post(events, json=big, headers=headers)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "properties"
    fine = {"type": "product.viewed", "properties": {"sku": "TEA-1"}}
    assert client.post(events, json=fine, headers=headers).status_code == 201
    fields = client.post(
        "/api/v1/contacts",
        json={"name": "Wu", "custom_fields": {"notes": "y" * 5000}},
        headers=headers,
    )
    assert fields.status_code == 422 and fields.json()["error"]["field"] == "custom_fields"
    many = {f"f{i}": 1 for i in range(101)}
    answer = client.post(
        "/api/v1/contacts", json={"name": "Wu", "custom_fields": many}, headers=headers
    )
    assert answer.status_code == 422
