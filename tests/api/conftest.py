"""Fixtures shared by the API tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_whatsapp_numbers import number_body
from tests.conftest import Tenant


@pytest.fixture
def webhook_path(client: TestClient, tenant: Tenant) -> str:
    """The webhook path of a WhatsApp number registered in ``tenant``."""
    number = client.post(
        "/api/v1/whatsapp-numbers", json=number_body(), headers=tenant.headers()
    ).json()
    path: str = "/webhooks/whatsapp/" + number["webhook_url"].rsplit("/", 1)[1]
    return path
