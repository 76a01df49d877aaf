"""Request bodies have a limit per route, enforced before they are read: 413 with the limit,
and an anonymous caller is refused before it can send anything large."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tidings.api.app import create_app
from tidings.api.limits import JSON_BODY_LIMIT, WEBHOOK_BODY_LIMIT, body_limit
from tidings.bootstrap import build
from tidings.contacts.routes import MAX_BACKGROUND_IMPORT_BYTES, MAX_IMPORT_BYTES
from tidings.settings import load_settings


def test_a_json_body_over_the_limit_is_refused_with_the_limit(
    client: TestClient, tenant: Tenant
) -> None:
    huge = b'{"name": "' + b"x" * JSON_BODY_LIMIT + b'"}'
    refused = client.post(
        "/api/v1/contacts",
        content=huge,
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "too_large" and error["field"] == "body"
    assert error["details"]["limit_bytes"] == JSON_BODY_LIMIT
    assert "1 MB" in error["message"]
    # Nothing was written.
    assert client.get("/api/v1/contacts", headers=tenant.headers()).json()["items"] == []


def test_a_chunked_body_is_cut_off_at_the_limit_whatever_it_declares(
    client: TestClient, tenant: Tenant
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"y" * 64 * 1024  # 2.5 MB in all, no Content-Length
        yield b'"}'

    refused = client.post(
        "/api/v1/contacts",
        content=chunks(),
        headers={**tenant.headers(), "content-type": "application/json"},
    )
    assert refused.status_code == 413


def test_an_anonymous_caller_is_refused_before_its_body_is_read(client: TestClient) -> None:
    refused = client.post(
        "/api/v1/contacts/import",
        content=b"x" * (MAX_IMPORT_BYTES + 1),
        headers={"content-type": "text/csv"},
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"


def test_each_route_has_its_own_limit(client: TestClient, tenant: Tenant) -> None:
    assert body_limit("/webhooks/whatsapp/abc") == WEBHOOK_BODY_LIMIT
    assert body_limit("/api/v1/contacts/import") == MAX_IMPORT_BYTES
    assert body_limit("/api/v1/contacts/imports") == MAX_BACKGROUND_IMPORT_BYTES
    assert body_limit("/api/v1/whatsapp-numbers/7/media") > 100 * 1024 * 1024
    assert body_limit("/api/v1/workspace") == JSON_BODY_LIMIT
    # A CSV of 3 MB is fine for the import, which a JSON route would refuse.
    rows = "phone,name\n" + "".join(f"+8869123{i:05d},Name {i}\n" for i in range(3))
    csv = rows + "#" * (3 * 1024 * 1024)
    answer = client.post(
        "/api/v1/contacts/import",
        content=csv.encode(),
        headers={**tenant.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code != 413, answer.text
    webhook = client.post(
        "/webhooks/whatsapp/unknown-key",
        content=b"{" + b" " * (WEBHOOK_BODY_LIMIT + 1) + b"}",
        headers={"content-type": "application/json"},
    )
    assert webhook.status_code == 413


def test_a_content_length_that_is_not_a_number_is_a_bad_request(
    client: TestClient, tenant: Tenant
) -> None:
    answer = client.post(
        "/api/v1/contacts",
        content=b"{}",
        headers={**tenant.headers(), "content-type": "application/json", "content-length": "x"},
    )
    assert answer.status_code == 400


def test_health_answers_503_naming_the_database_when_it_cannot_be_reached(
    tmp_path: Path,
) -> None:
    unreachable = build(
        load_settings(
            database_url="postgresql://nobody@127.0.0.1:9/none", data_dir=tmp_path / "data"
        )
    )
    try:
        with TestClient(create_app(unreachable)) as client:
            answer = client.get("/health")
        assert answer.status_code == 503
        assert answer.json()["failing"] == "database"
    finally:
        unreachable.close()


def test_the_openapi_document_declares_authentication_and_every_error(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["webSession"]["in"] == "cookie"
    operation = document["paths"]["/api/v1/contacts"]["post"]
    assert {"apiKey": []} in operation["security"]
    assert {"401", "403", "404", "409", "413", "422"} <= set(operation["responses"])


def test_a_method_the_path_does_not_have_is_405_with_allow(
    client: TestClient, tenant: Tenant
) -> None:
    answer = client.put("/api/v1/contacts", json={}, headers=tenant.headers())
    assert answer.status_code == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
