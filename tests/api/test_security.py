"""Authentication, workspace isolation and roles: nobody sees or does more than they may."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.workspaces.domain import Role

API = "/api/v1"


def test_every_api_call_needs_a_valid_key(client: TestClient, tenant: Tenant) -> None:
    for headers in ({}, {"Authorization": "Bearer tid_wrong"}, {"Authorization": "Basic abc"}):
        response = client.get(f"{API}/contacts", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"


def test_a_key_of_one_workspace_never_reaches_another(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    other = make_tenant(tidings, "bangkok-shop", region="TH", timezone="Asia/Bangkok")
    theirs = client.post(
        f"{API}/contacts", json={"phone": "0812345678"}, headers=other.headers()
    ).json()
    assert theirs["phone"] == "+66812345678"
    for method, path in [
        ("GET", f"/contacts/{theirs['id']}"),
        ("PATCH", f"/contacts/{theirs['id']}"),
        ("DELETE", f"/contacts/{theirs['id']}"),
        ("GET", f"/contacts/{theirs['id']}/events"),
        ("POST", f"/contacts/{theirs['id']}/tags"),
    ]:
        body = {"tags": ["x"]} if path.endswith("tags") else {}
        response = client.request(method, API + path, json=body, headers=tenant.headers())
        assert response.status_code == 404, (method, path)
        assert "0812345678" not in response.text
    mine = client.get(f"{API}/contacts", params={"phone": "+66812345678"}, headers=tenant.headers())
    assert mine.json()["items"] == []
    # The same phone may exist in both workspaces: uniqueness is per tenant.
    same = client.post(f"{API}/contacts", json={"phone": "+66812345678"}, headers=tenant.headers())
    assert same.status_code == 201


def test_agents_cannot_manage_keys_agents_or_settings(client: TestClient, tenant: Tenant) -> None:
    agent = tenant.headers(Role.AGENT)
    assert client.post(f"{API}/api-keys", json={"name": "x"}, headers=agent).status_code == 403
    assert client.get(f"{API}/api-keys", headers=agent).status_code == 403
    assert (
        client.post(
            f"{API}/agents", json={"email": "a@b.example", "name": "A"}, headers=agent
        ).status_code
        == 403
    )
    assert (
        client.patch(f"{API}/workspace", json={"name": "Mine now"}, headers=agent).status_code
        == 403
    )


def test_admins_cannot_mint_owner_keys(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        f"{API}/api-keys", json={"name": "x", "role": "owner"}, headers=tenant.headers(Role.ADMIN)
    )
    assert response.status_code == 403


def test_api_keys_are_shown_once_stored_hashed_and_revocable(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    created = client.post(
        f"{API}/api-keys", json={"name": "zapier"}, headers=tenant.headers()
    ).json()
    key = created["key"]
    assert key.startswith("tid_") and len(key) > 40
    listed = client.get(f"{API}/api-keys", headers=tenant.headers()).json()
    assert all("key" not in k for k in listed)
    from sqlalchemy import text

    with tidings.db.reading() as session:
        stored = [row[0] for row in session.execute(text("SELECT digest FROM api_keys"))]
    assert key not in stored and all(len(d) == 64 for d in stored)
    assert (
        client.get(f"{API}/contacts", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    )
    assert (
        client.delete(f"{API}/api-keys/{created['id']}", headers=tenant.headers()).status_code
        == 200
    )
    assert (
        client.get(f"{API}/contacts", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    )


def test_agents_are_created_with_hashed_passwords_and_the_last_owner_stays(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    short = client.post(
        f"{API}/agents",
        json={"email": "mei@shop.example", "name": "Mei", "password": "short"},
        headers=tenant.headers(),
    )
    assert short.status_code == 422 and short.json()["error"]["field"] == "password"
    agent = client.post(
        f"{API}/agents",
        json={"email": "Mei@Shop.example", "name": "Mei", "password": "a good long one"},
        headers=tenant.headers(),
    ).json()
    assert agent["email"] == "mei@shop.example" and agent["role"] == "agent"
    from sqlalchemy import text

    with tidings.db.reading() as session:
        hashes = [r[0] for r in session.execute(text("SELECT password_hash FROM users"))]
    assert all(h.startswith("$argon2") for h in hashes)
    demote = client.patch(
        f"{API}/agents/{tenant.owner_id}", json={"role": "admin"}, headers=tenant.headers()
    )
    assert demote.status_code == 409 and demote.json()["error"]["code"] == "last_owner"


def test_workspace_policy_can_be_overridden_with_validation(
    client: TestClient, tenant: Tenant
) -> None:
    ok = client.patch(
        f"{API}/workspace",
        json={"policy": {"daily_quota_per_number": 500}, "default_region": "hk"},
        headers=tenant.headers(),
    ).json()
    assert ok["policy"]["daily_quota_per_number"] == 500
    assert ok["policy"]["service_window_hours"] == 24
    assert ok["default_region"] == "HK"
    bad = client.patch(
        f"{API}/workspace", json={"policy": {"retention_days": 7}}, headers=tenant.headers()
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "policy.retention_days"
    unknown = client.patch(
        f"{API}/workspace", json={"policy": {"made_up": 1}}, headers=tenant.headers()
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "policy.made_up"
    # A Hong Kong workspace now parses local numbers as Hong Kong ones (C2).
    local = client.post(f"{API}/contacts", json={"phone": "9123 4567"}, headers=tenant.headers())
    assert local.json()["phone"] == "+85291234567"


def test_health_reports_database_and_schema(client: TestClient) -> None:
    health = client.get("/health").json()
    from tidings.db.migrate import head_revision

    assert health["status"] == "ok" and health["schema_revision"] == head_revision()
