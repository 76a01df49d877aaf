"""The outgoing pipeline end to end, over real sockets: Tidings served over HTTP, the
WhatsApp simulator as the provider, webhooks both ways (I1, X3, P1, P6, P7)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.live import Stack, fast_config, live_stack
from tidings.bootstrap import Tidings
from tidings.simulator import customers

PERSONAS = [p.wa_id for p in customers.PERSONAS]
SETTLED = {"accepted", "sent", "delivered", "read", "failed", "skipped", "uncertain"}


def customers_write(stack: Stack, wa_ids: list[str]) -> list[dict[str, Any]]:
    """Each customer writes once; returns the conversations once all have arrived."""
    for wa_id in wa_ids:
        httpx.post(f"{stack.simulator.url}/_simulator/customers/{wa_id}/messages", json={})

    def arrived() -> bool:
        items = stack.api.get("/api/v1/conversations").json()["items"]
        return len(items) == len(wa_ids)

    stack.drain(arrived)
    items: list[dict[str, Any]] = stack.api.get("/api/v1/conversations").json()["items"]
    return items


def outbound(stack: Stack) -> list[dict[str, Any]]:
    return [m for m in stack.messages() if m["direction"] == "out"]


def test_replies_reach_the_customer_once_and_come_back_with_read_ticks(
    tidings: Tidings, tenant: Tenant
) -> None:
    with live_stack(tidings, tenant, fast_config()) as stack:
        conversations = customers_write(stack, PERSONAS)
        assert all(c["window_open"] and c["unread_count"] == 1 for c in conversations)
        for conversation in conversations:
            answer = stack.api.post(
                f"/api/v1/conversations/{conversation['id']}/messages",
                json={
                    "text": "ขอบคุณค่ะ / 謝謝 / thanks",
                    "idempotency_key": f"r{conversation['id']}",
                },
            )
            assert answer.status_code == 202, answer.text
            again = stack.api.post(
                f"/api/v1/conversations/{conversation['id']}/messages",
                json={
                    "text": "ขอบคุณค่ะ / 謝謝 / thanks",
                    "idempotency_key": f"r{conversation['id']}",
                },
            )
            assert again.json()["id"] == answer.json()["id"]  # a retried request sends nothing new
        stack.drain(lambda: all(m["status"] == "read" for m in outbound(stack)))
        sent = outbound(stack)
        accepted = [e for e in stack.ledger() if e["outcome"] == "accepted"]
        assert len(sent) == len(PERSONAS) == len(accepted)
        assert {m["provider_message_id"] for m in sent} == {e["message_id"] for e in accepted}
        assert all(m["sent_at"] and m["delivered_at"] and m["read_at"] for m in sent)
        paused = stack.api.get(f"/api/v1/conversations/{conversations[0]['id']}").json()
        assert paused["automation_paused_until"] is not None  # a human replied (I3)
        assert paused["unread_count"] == 0


def test_faults_duplicates_and_reordering_lose_nothing_and_double_nothing(
    tidings: Tidings, tenant: Tenant
) -> None:
    config = fast_config(
        transient_error_rate=0.3, duplicate_rate=0.5, reorder=True, pair_interval=None
    )
    config.update({"read_delay": 0.1})
    with live_stack(tidings, tenant, config) as stack:
        conversations = customers_write(stack, PERSONAS)
        for round_number in range(4):
            for conversation in conversations:
                stack.api.post(
                    f"/api/v1/conversations/{conversation['id']}/messages",
                    json={"text": f"update {round_number}"},
                )
            stack.clock.advance(timedelta(seconds=7))  # the pair limit (P6) spaces each contact

        def settled() -> bool:
            messages = outbound(stack)
            final = all(m["status"] in {"read", "failed"} for m in messages)
            return final and stack.simulator.simulator.webhooks.pending() == 0

        stack.drain(settled, advance_seconds=120, timeout=90)
        sent = outbound(stack)
        ledger = stack.ledger()
        accepted = Counter(e["message_id"] for e in ledger if e["outcome"] == "accepted")
        assert len(sent) == 4 * len(PERSONAS)
        assert all(count == 1 for count in accepted.values())  # nothing sent twice
        delivered = [m for m in sent if m["status"] == "read"]
        assert {m["provider_message_id"] for m in delivered} <= set(accepted)
        # Transient failures are retried within the message's validity: every one arrives, and
        # none keeps the code of an attempt that failed before it.
        for message in sent:
            assert message["status"] == "read", message
            assert message["provider_message_id"] in accepted
            assert message["error_code"] is None, message
        rejected = [e for e in ledger if e["outcome"] == "rejected"]
        rate_limited = sum(1 for e in rejected if e["error_code"] == 130429)
        # Every attempt the pipeline counted reached the provider once: accepted or refused;
        # a rate-limit answer (the pacing's miss) does not spend one.
        assert sum(m["attempts"] for m in sent) == len(accepted) + len(rejected) - rate_limited
        assert len(rejected) > 0


def test_a_message_outside_the_window_is_refused_to_an_agent_and_skipped_for_a_bot(
    tidings: Tidings, tenant: Tenant
) -> None:
    with live_stack(tidings, tenant, fast_config()) as stack:
        (conversation,) = customers_write(stack, [PERSONAS[0]])
        stack.clock.advance(timedelta(hours=24, seconds=1))
        refused = stack.api.post(
            f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "still there?"}
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["field"] == "content.type"
        bot = stack.api.post(
            "/api/v1/messages",
            json={
                "contact_id": conversation["contact_id"],
                "content": {"type": "text", "text": {"body": "we miss you"}},
            },
        ).json()
        assert bot["status"] == "skipped" and bot["status_reason"].startswith("P1")
        template = stack.api.post(
            "/api/v1/messages",
            json={
                "contact_id": conversation["contact_id"],
                "purpose": "utility",
                "content": {
                    "type": "template",
                    "template": {"name": "order_update", "language": {"code": "th"}},
                },
            },
        ).json()
        stack.drain(
            lambda: stack.api.get(f"/api/v1/messages/{template['id']}").json()["status"] == "read"
        )
        traces = stack.api.get(f"/api/v1/messages/{bot['id']}/traces").json()
        assert [t["outcome"] for t in traces] == ["skipped"]


def test_the_provider_refusing_a_closed_window_ends_the_message_with_its_code(
    tidings: Tidings, tenant: Tenant
) -> None:
    """Our clock may think the window is open when WhatsApp's does not: 131047 arrives as a
    failed status and the message fails with the code, not silently."""
    with live_stack(tidings, tenant, fast_config()) as stack:
        (conversation,) = customers_write(stack, [PERSONAS[2]])
        stack.simulator.simulator.last_inbound.clear()  # WhatsApp forgot the window
        sent = stack.api.post(
            f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "你好"}
        ).json()

        def failed() -> bool:
            return bool(
                stack.api.get(f"/api/v1/messages/{sent['id']}").json()["status"] == "failed"
            )

        stack.drain(failed)
        message = stack.api.get(f"/api/v1/messages/{sent['id']}").json()
        assert message["error_code"] == 131047
        assert message["status_reason"].startswith("P1")
        outcomes = [
            t["outcome"] for t in stack.api.get(f"/api/v1/messages/{sent['id']}/traces").json()
        ]
        assert outcomes[:2] == ["queued", "accepted"] and outcomes[-1] == "failed"


def test_a_customer_known_only_by_a_username_is_answered_by_bsuid(
    tidings: Tidings, tenant: Tenant
) -> None:
    """Username users write with no phone at all (BSUID era): an agent's reply reaches them,
    addressed by ``recipient``, and its ticks come back by ``recipient_user_id``."""
    import json

    from tests.api.test_whatsapp_webhook_endpoint import batch
    from tidings.channels.whatsapp.webhook import sign

    bsuid = "TH.13491208655302741918"
    with live_stack(tidings, tenant, fast_config(enforce_window=False)) as stack:
        config = stack.simulator.simulator.config
        body = batch("wamid.username1")
        value = body["entry"][0]["changes"][0]["value"]
        value["metadata"]["phone_number_id"] = config.phone_number_id
        value["contacts"] = [{"profile": {"name": "Ploy", "username": "ploy.s"}, "user_id": bsuid}]
        (message,) = value["messages"]
        del message["from"]
        message["from_user_id"] = bsuid
        message["timestamp"] = str(int(stack.clock.now().timestamp()))
        message["text"] = {"body": "มีไซส์ M ไหมคะ"}
        raw = json.dumps(body).encode()
        posted = httpx.post(
            str(config.webhook_url),
            content=raw,
            headers={"X-Hub-Signature-256": sign(config.app_secret, raw)},
        )
        assert posted.status_code == 200, posted.text
        stack.drain(lambda: bool(stack.api.get("/api/v1/conversations").json()["items"]))
        (conversation,) = stack.api.get("/api/v1/conversations").json()["items"]
        answer = stack.api.post(
            f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "มีค่ะ"}
        )
        assert answer.status_code == 202, answer.text
        stack.drain(lambda: all(m["status"] == "read" for m in outbound(stack)))
        (sent,) = [e for e in stack.ledger() if e["outcome"] == "accepted"]
        assert sent["to"] == bsuid and sent["payload"]["recipient"] == bsuid
        assert "to" not in sent["payload"]
