"""Every request to a user-given address goes through the egress guard: checked when saved
(422 naming the field) and when sent, connecting to the address that was checked."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.test_whatsapp_numbers import number_body
from tests.conftest import Tenant
from tests.integration.test_outgoing_pipeline import PERSONAS, customers_write, outbound
from tests.live import fast_config, live_stack
from tests.receiver import receiver
from tidings.bootstrap import Tidings
from tidings.egress.http import EgressRefusedError, GuardedTransport, check_url
from tidings.egress.policy import EgressPolicy


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://10.0.0.7:8080",
        "http://[::ffff:127.0.0.1]:9",
        "http://100.64.1.1",
        "http://0.0.0.0:80",
    ],
)
def test_a_number_cannot_send_its_token_to_a_private_address(
    client: TestClient, tenant: Tenant, url: str
) -> None:
    refused = client.post(
        "/api/v1/whatsapp-numbers", json=number_body(api_base_url=url), headers=tenant.headers()
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "api_base_url"
    created = client.post(
        "/api/v1/whatsapp-numbers", json=number_body(), headers=tenant.headers()
    ).json()
    changed = client.patch(
        f"/api/v1/whatsapp-numbers/{created['id']}",
        json={"api_base_url": url},
        headers=tenant.headers(),
    )
    assert changed.status_code == 422
    assert changed.json()["error"]["field"] == "api_base_url"


def test_loopback_is_refused_unless_the_operator_allowed_it() -> None:
    with pytest.raises(EgressRefusedError, match=r"non-public address 127\.0\.0\.1"):
        check_url("http://127.0.0.1:9/", EgressPolicy())
    check_url("http://127.0.0.1:9/", EgressPolicy.of(["127.0.0.0/8"]))
    with pytest.raises(EgressRefusedError, match="http"):
        check_url("file:///etc/passwd", EgressPolicy.of(["127.0.0.0/8"]))


@pytest.fixture
def rebinding_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A name that resolves to a public address when checked, then to loopback — what a
    hostile DNS server does to get past a check made before a second lookup."""
    real = socket.getaddrinfo
    answers = iter(["93.184.215.14", "127.0.0.1", "127.0.0.1", "127.0.0.1"])

    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "rebind.example":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return "rebind.example"


def test_the_connection_goes_to_the_address_that_was_checked(rebinding_name: str) -> None:
    with receiver() as hook:
        port = int(hook.url.rsplit(":", 1)[1].split("/", 1)[0])
        url = f"http://{rebinding_name}:{port}/x"
        check_url(url, EgressPolicy())  # the first answer: public
        with (
            httpx.Client(transport=GuardedTransport(EgressPolicy())) as client,
            pytest.raises(EgressRefusedError, match=r"127\.0\.0\.1"),
        ):
            client.post(url, content=b"{}")
        assert hook.received == []


def test_a_send_to_a_refused_api_address_fails_with_the_reason_and_never_leaves(
    tidings: Tidings, tenant: Tenant
) -> None:
    with live_stack(tidings, tenant, fast_config()) as stack:
        [conversation] = customers_write(stack, [PERSONAS[0]])
        # The operator withdraws the permission for loopback: the number's address (the
        # simulator's) is now refused, and its token must not go there.
        tidings.settings.egress_allow = ""
        for cached in ("egress_policy", "whatsapp"):
            tidings.__dict__.pop(cached, None)
        stack.worker = tidings.make_worker()
        answer = stack.api.post(
            f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "謝謝"}
        )
        assert answer.status_code == 202, answer.text
        stack.drain(lambda: [m["status"] for m in outbound(stack)] == ["failed"])
        [message] = outbound(stack)
        assert "API address is not allowed" in (message["status_reason"] or "")
        assert message["attempts"] == 1  # failed at once, not retried
        assert [e for e in stack.ledger() if e["outcome"] == "accepted"] == []
