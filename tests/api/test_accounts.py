"""Accounts: a deactivated user can do nothing, a changed password signs the old sessions
out, anyone can be signed out everywhere, and guessable passwords are refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_web_sessions import PASSWORD, agent, sign_in
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role


def admin_with_key(client: TestClient, tenant: Tenant) -> tuple[int, str]:
    """An admin who signs in and makes an API key of their own: (user id, key)."""
    made = client.post(
        "/api/v1/agents",
        json={"email": "ops@teahouse.example", "name": "Ops", "role": "admin",
              "password": "orchid valley 42"},
        headers=tenant.headers(),
    )  # fmt: skip
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    client.post(
        "/app/login",
        data={"workspace": tenant.slug, "email": "ops@teahouse.example",
              "password": "orchid valley 42"},
        follow_redirects=False,
    )  # fmt: skip
    page = client.get("/app/inbox").text
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    key = client.post(
        "/api/v1/api-keys", json={"name": "ops key", "role": "admin"},
        headers={"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert key.status_code == 201, key.text
    return user_id, key.json()["key"]


def test_a_deactivated_user_can_do_nothing(client: TestClient, tenant: Tenant) -> None:
    user_id, key = admin_with_key(client, tenant)
    own = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/contacts", headers=own).status_code == 200
    assert client.get("/api/v1/conversations").status_code == 200  # the web session
    deactivated = client.patch(
        f"/api/v1/agents/{user_id}", json={"is_active": False}, headers=tenant.headers()
    )
    assert deactivated.status_code == 200
    # Neither the session nor the key works; the key cannot make keys either.
    assert client.get("/api/v1/conversations").status_code == 401
    assert client.get("/api/v1/contacts", headers=own).status_code == 401
    made = client.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}, headers=own)
    assert made.status_code == 401
    keys = client.get("/api/v1/api-keys", headers=tenant.headers()).json()
    assert [k["revoked_at"] is not None for k in keys if k["name"] == "ops key"] == [True]


def test_a_changed_password_ends_the_sessions_opened_with_the_old_one(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    assert sign_in(client, tenant) == 303
    assert client.get("/api/v1/conversations").status_code == 200
    agents = client.get("/api/v1/agents", headers=tenant.headers()).json()
    mei = next(a for a in agents if a["email"] == "mei@teahouse.example")
    changed = client.patch(
        f"/api/v1/agents/{mei['id']}",
        json={"password": "jasmine harbour 77"},
        headers=tenant.headers(),
    )
    assert changed.status_code == 200, changed.text
    assert client.get("/api/v1/conversations").status_code == 401
    assert sign_in(client, tenant, PASSWORD) == 401
    assert sign_in(client, tenant, "jasmine harbour 77") == 303


def test_an_admin_signs_a_user_out_everywhere(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    assert sign_in(client, tenant) == 303
    agents = client.get("/api/v1/agents", headers=tenant.headers()).json()
    mei = next(a for a in agents if a["email"] == "mei@teahouse.example")
    ended = client.post(f"/api/v1/agents/{mei['id']}/sign-out-everywhere", headers=tenant.headers())
    assert ended.json() == {"sessions_ended": 1}
    assert client.get("/api/v1/conversations").status_code == 401
    # An agent may not sign others out.
    agent_key = tenant.headers(Role.AGENT)
    other = client.post(f"/api/v1/agents/{tenant.owner_id}/sign-out-everywhere", headers=agent_key)
    assert other.status_code == 403


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("          ", "at least"),
        ("  short   ", "at least"),
        ("password123", "pick first"),
        ("Qwertyuiop!", "pick first"),
        ("aaaaaaaaaaaa", "different characters"),
        ("abcdefghijk", "in order"),
        ("mei@teahouse.example", "e-mail"),
        ("Shop taipei-shop 2026", "workspace"),
    ],
)
def test_a_guessable_password_is_refused_with_the_reason(
    tidings: Tidings, tenant: Tenant, password: str, why: str
) -> None:
    from tidings.kernel.errors import TidingsError

    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        with pytest.raises(TidingsError) as refused:
            workspaces.create_user(
                session, workspace=workspace, email="mei@teahouse.example", name="Mei",
                role=Role.AGENT, password=password, granted_by=Role.OWNER,
                now=tidings.clock.now(),
            )  # fmt: skip
    assert refused.value.field == "password"
    assert why in refused.value.message
