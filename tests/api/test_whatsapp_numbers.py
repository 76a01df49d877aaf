"""WhatsApp numbers per workspace (I2): secrets sealed at rest and never returned."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError
from tidings.kernel.sealing import SecretBox
from tidings.workspaces.domain import Role

API = "/api/v1/whatsapp-numbers"
SECRETS = {
    "access_token": "EAAG-token-123",
    "app_secret": "app-secret-456",
    "verify_token": "verify-789",
}


def number_body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Hong Kong shop",
        "phone_number_id": "106540352242922",
        "business_account_id": "102290129340398",
        "display_phone_number": "+852 3000 1234",
        **SECRETS,
        **overrides,
    }


def test_a_number_is_added_with_its_webhook_url_and_without_secrets_in_any_answer(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    created = client.post(API, json=number_body(), headers=tenant.headers())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["display_phone_number"] == "+85230001234"
    assert body["api_base_url"] == "https://graph.facebook.com" and body["api_version"] == "v23.0"
    assert body["webhook_url"].startswith("http://127.0.0.1:8000/webhooks/whatsapp/")
    answers = created.text + client.get(API, headers=tenant.headers()).text
    answers += client.get(f"{API}/{body['id']}", headers=tenant.headers()).text
    for secret in SECRETS.values():
        assert secret not in answers
    with tidings.db.reading() as session:
        row = session.execute(text("SELECT * FROM whatsapp_numbers")).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    for secret in SECRETS.values():
        assert secret not in stored
    assert tidings.secret_box.open(row["access_token_sealed"]) == SECRETS["access_token"]


def test_bad_settings_are_refused_naming_the_field(client: TestClient, tenant: Tenant) -> None:
    cases = [
        ({"phone_number_id": "abc"}, "phone_number_id"),
        ({"display_phone_number": "12"}, "display_phone_number"),
        ({"api_base_url": "ftp://graph"}, "api_base_url"),
        ({"api_version": "23"}, "api_version"),
        ({"verify_token": "short"}, "verify_token"),
        ({"access_token": "  "}, "access_token"),
        ({"name": ""}, "name"),
    ]
    for override, field in cases:
        response = client.post(API, json=number_body(**override), headers=tenant.headers())
        assert response.status_code == 422, override
        assert response.json()["error"]["field"] == field, override
    assert client.get(API, headers=tenant.headers()).json() == []


def test_a_phone_number_id_belongs_to_one_workspace(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    assert client.post(API, json=number_body(), headers=tenant.headers()).status_code == 201
    other = make_tenant(tidings, "other-shop")
    taken = client.post(API, json=number_body(), headers=other.headers())
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "phone_number_id"


def test_numbers_are_invisible_to_other_workspaces_and_managed_by_admins_only(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    assert (
        client.post(API, json=number_body(), headers=tenant.headers(Role.AGENT)).status_code == 403
    )
    number = client.post(API, json=number_body(), headers=tenant.headers(Role.ADMIN)).json()
    other = make_tenant(tidings, "other-shop")
    assert client.get(f"{API}/{number['id']}", headers=other.headers()).status_code == 404
    assert (
        client.patch(
            f"{API}/{number['id']}", json={"name": "x"}, headers=other.headers()
        ).status_code
        == 404
    )
    assert client.get(API, headers=other.headers()).json() == []


def test_the_api_location_and_secrets_can_be_changed(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    number = client.post(API, json=number_body(), headers=tenant.headers()).json()
    changed = client.patch(
        f"{API}/{number['id']}",
        json={
            "api_base_url": "http://127.0.0.1:4010/",
            "access_token": "new-token",
            "is_active": False,
        },
        headers=tenant.headers(),
    ).json()
    assert changed["api_base_url"] == "http://127.0.0.1:4010" and changed["is_active"] is False
    with tidings.db.reading() as session:
        sealed = session.execute(
            text("SELECT access_token_sealed, app_secret_sealed FROM whatsapp_numbers")
        ).one()
    assert tidings.secret_box.open(sealed[0]) == "new-token"
    assert tidings.secret_box.open(sealed[1]) == SECRETS["app_secret"]


def test_a_sealed_secret_opens_only_under_the_same_key() -> None:
    sealed = SecretBox("installation-secret-one").seal("EAAG-token")
    assert SecretBox("installation-secret-one").open(sealed) == "EAAG-token"
    with pytest.raises(TidingsError) as caught:
        SecretBox("installation-secret-two").open(sealed)
    assert caught.value.code == "secret_unreadable"
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(TidingsError):
        SecretBox("installation-secret-one").open(tampered)


def test_an_upload_to_a_provider_that_cannot_be_reached_is_a_502_with_the_reason(
    client: TestClient, tenant: Tenant
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    added = client.post(
        API, json=number_body(api_base_url=f"http://127.0.0.1:{port}"), headers=tenant.headers()
    )
    assert added.status_code == 201, added.text
    answer = client.post(
        f"{API}/{added.json()['id']}/media",
        files={"file": ("menu.pdf", b"%PDF-1.4 a small menu", "application/pdf")},
        headers=tenant.headers(),
    )
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["field"] == "file" and "could not be reached" in error["message"]
