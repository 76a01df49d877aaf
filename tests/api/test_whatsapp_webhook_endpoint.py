"""The inbound webhook endpoint: authenticated on the raw body, every update stored once (I1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels.whatsapp.webhook import parse_webhook, sign

APP_SECRET = "app-secret-456"


def batch(*wamids: str, statuses: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "85230001234",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "陳大文"}, "wa_id": "85291234567"}],
                            "messages": [
                                {
                                    "from": "85291234567",
                                    "id": w,
                                    "timestamp": "1763791200",
                                    "type": "text",
                                    "text": {"body": "幾錢?"},
                                }
                                for w in wamids
                            ],
                            "statuses": [
                                {
                                    "id": w,
                                    "status": s,
                                    "timestamp": "1763791260",
                                    "recipient_id": "85291234567",
                                }
                                for w, s in statuses
                            ],
                        },
                    }
                ],
            }
        ],
    }


def post(client: TestClient, path: str, body: dict[str, Any], *, secret: str = APP_SECRET) -> Any:
    raw = json.dumps(body, ensure_ascii=True).encode()
    return client.post(
        path,
        content=raw,
        headers={"X-Hub-Signature-256": sign(secret, raw), "Content-Type": "application/json"},
    )


def stored(tidings: Tidings) -> list[tuple[str, str]]:
    """The updates filed once each, after the worker split the kept POSTs."""
    tidings.make_worker(sources=tidings.work_sources[:1]).run_once()
    with tidings.db.reading() as session:
        rows = session.execute(
            text("SELECT kind, event_key FROM whatsapp_inbound_events ORDER BY id")
        )
        return [(r[0], r[1]) for r in rows]


def test_the_verification_handshake_answers_the_challenge(
    client: TestClient, webhook_path: str
) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "verify-789",
        "hub.challenge": "1158201444",
    }
    answer = client.get(webhook_path, params=params)
    assert answer.status_code == 200 and answer.text == "1158201444"
    wrong = client.get(webhook_path, params={**params, "hub.verify_token": "nope"})
    assert wrong.status_code == 403
    assert client.get("/webhooks/whatsapp/unknown-key", params=params).status_code == 404


def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    client: TestClient, tidings: Tidings, webhook_path: str
) -> None:
    forged = post(client, webhook_path, batch("wamid.A"), secret="guessed-secret")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"
    unsigned = client.post(webhook_path, json=batch("wamid.A"))
    assert unsigned.status_code == 401
    raw = json.dumps(batch("wamid.A")).encode()
    tampered = client.post(
        webhook_path,
        content=raw.replace(b"wamid.A", b"wamid.B"),
        headers={"X-Hub-Signature-256": sign(APP_SECRET, raw)},
    )
    assert tampered.status_code == 401
    assert stored(tidings) == []
    with tidings.db.reading() as session:
        kept = session.execute(text("SELECT count(*) FROM whatsapp_webhook_deliveries"))
        assert kept.scalar() == 0


def test_every_update_of_a_batch_is_stored_once_even_when_meta_resends(
    client: TestClient, tidings: Tidings, webhook_path: str
) -> None:
    body = batch(
        "wamid.1",
        "wamid.2",
        "wamid.3",
        statuses=(("wamid.out", "delivered"), ("wamid.out", "read")),
    )
    first = post(client, webhook_path, body)
    assert first.status_code == 200
    assert first.json() == {"received": 5}
    assert len(stored(tidings)) == 5
    again = post(client, webhook_path, body)
    assert again.json() == {"received": 5}
    late = post(client, webhook_path, batch(statuses=(("wamid.out", "delivered"),)))
    assert late.json() == {"received": 1}
    keys = stored(tidings)
    assert sorted(keys) == sorted(
        [
            ("message", "message:wamid.1"),
            ("message", "message:wamid.2"),
            ("message", "message:wamid.3"),
            ("status", "status:wamid.out:delivered"),
            ("status", "status:wamid.out:read"),
        ]
    )


def test_each_stored_update_is_a_webhook_of_its_own_that_parses_to_the_same_message(
    client: TestClient, tidings: Tidings, webhook_path: str
) -> None:
    post(client, webhook_path, batch("wamid.X", "wamid.Y"))
    stored(tidings)
    with tidings.db.reading() as session:
        payloads = [
            r[0]
            for r in session.execute(
                text("SELECT payload FROM whatsapp_inbound_events ORDER BY id")
            )
        ]
    parsed = [parse_webhook(p if isinstance(p, dict) else json.loads(p)).messages for p in payloads]
    assert [[m.message_id for m in ms] for ms in parsed] == [["wamid.X"], ["wamid.Y"]]
    assert parsed[0][0].sender.profile_name == "陳大文" and parsed[0][0].text == "幾錢?"


def test_a_signed_body_that_is_not_a_webhook_is_a_400(
    client: TestClient, webhook_path: str
) -> None:
    raw = b"not json"
    response = client.post(
        webhook_path, content=raw, headers={"X-Hub-Signature-256": sign(APP_SECRET, raw)}
    )
    assert response.status_code == 400
    assert post(client, webhook_path, {"object": "page"}).status_code == 400


def test_a_rotated_app_secret_counts_at_once(
    client: TestClient, tenant: Tenant, webhook_path: str
) -> None:
    assert post(client, webhook_path, batch("wamid.before")).status_code == 200
    number_id = client.get("/api/v1/whatsapp-numbers", headers=tenant.headers()).json()[0]["id"]
    rotated = client.patch(
        f"/api/v1/whatsapp-numbers/{number_id}",
        json={"app_secret": "a-rotated-app-secret"},
        headers=tenant.headers(),
    )
    assert rotated.status_code == 200, rotated.text
    assert post(client, webhook_path, batch("wamid.old")).status_code == 401
    accepted = post(client, webhook_path, batch("wamid.new"), secret="a-rotated-app-secret")
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]
)
def test_a_body_in_any_unicode_encoding_is_kept_and_split(
    client: TestClient, tidings: Tidings, webhook_path: str, encoding: str
) -> None:
    """RFC 8259 asks for UTF-8; a sender that adds a byte-order mark or writes UTF-16 or
    UTF-32 (as RFC 4627 allowed) is understood, not answered 400 or 500."""
    raw = json.dumps(batch(f"wamid.{encoding}"), ensure_ascii=False).encode(encoding)
    answer = client.post(
        webhook_path,
        content=raw,
        headers={"X-Hub-Signature-256": sign(APP_SECRET, raw), "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert stored(tidings) == [("message", f"message:wamid.{encoding}")]
