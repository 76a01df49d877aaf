"""The WhatsApp webhook adapter against Meta's own examples and the notes' payloads (I1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tidings.channels.domain import DeliveryStatus, MessageKind, next_delivery_status
from tidings.channels.whatsapp.webhook import (
    check_handshake,
    parse_webhook,
    sign,
    verify_signature,
)
from tidings.kernel.errors import TidingsError

# Meta's OpenAPI contract (MIT, its licence beside it) and the webhook bodies of Meta's
# documentation on statuses and errors, vendored so that the tests read nothing outside.
CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
SPEC = CONTRACTS / "whatsapp-business-messaging-api_v23.0.yaml"
DOCUMENTED_WEBHOOKS = CONTRACTS / "status-and-error-webhooks.json"


@pytest.fixture(scope="module")
def spec_examples() -> dict[str, Any]:
    # The C safe loader (or the pure-Python safe one): no arbitrary objects.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(SPEC.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    examples = spec["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    return {name: example["value"] for name, example in examples.items()}


def only_message(payload: dict[str, Any]) -> Any:
    batch = parse_webhook(payload)
    assert len(batch.messages) == 1
    return batch.messages[0]


def test_every_example_of_the_spec_parses_without_loss(spec_examples: dict[str, Any]) -> None:
    assert len(spec_examples) >= 16
    for name, payload in spec_examples.items():
        batch = parse_webhook(payload)
        sent = sum(
            len(c["value"].get("messages", []))
            for e in payload["entry"]
            for c in e["changes"]
            if c["field"] == "messages"
        )
        assert len(batch.messages) == sent, name
        for message in batch.messages:
            assert message.kind != MessageKind.UNKNOWN, name
            assert message.message_id.startswith("wamid."), name
            assert message.sender.key != "unknown", name
            assert message.channel_id == "106540352242922", name
            assert message.sent_at is not None, name
        if not sent:
            assert batch.others, name


def test_each_message_type_yields_what_the_inbox_needs(spec_examples: dict[str, Any]) -> None:
    text = only_message(spec_examples["Text Message"])
    assert (text.kind, text.text, text.sender.profile_name) == (
        MessageKind.TEXT,
        "Does it come in another color?",
        "Sheena Nelson",
    )
    assert text.sender.phone_e164 == "+16505551234"
    inquiry = only_message(spec_examples["Text Message with Context (Product Inquiry)"])
    assert inquiry.referred_product == "di9ozbzfi4" and inquiry.reply_to is not None
    ad = only_message(spec_examples["Text Message from Click to WhatsApp Ad"])
    assert ad.referral is not None and ad.referral.source_type == "ad"
    assert ad.referral.ctwa_clid and ad.referral.headline == "Chat with us"
    reaction = only_message(spec_examples["Reaction Message"])
    assert (
        reaction.text == "👍" and reaction.reaction_to and reaction.reaction_to.startswith("wamid.")
    )
    image = only_message(spec_examples["Image Message"])
    assert (
        image.media is not None and image.media.mime_type == "image/jpeg" and image.media.media_id
    )
    location = only_message(spec_examples["Location Message"])
    assert location.location is not None and isinstance(location.location.latitude, float)
    shared = only_message(spec_examples["Contact Sharing Message"])
    assert (
        shared.kind == MessageKind.CONTACTS
        and shared.items[0]["phones"][0]["wa_id"] == "19835552319"
    )
    unsupported = only_message(spec_examples["Unsupported Message"])
    assert unsupported.errors[0].code == 131051
    assert "not supported" in unsupported.errors[0].details
    button = only_message(spec_examples["Button Message"])
    assert (button.reply_id, button.text) == ("Unsubscribe", "Unsubscribe")
    listed = only_message(spec_examples["Interactive List Reply Message"])
    assert (listed.reply_id, listed.text) == ("priority_express", "Priority Mail Express")
    pressed = only_message(spec_examples["Interactive Button Reply Message"])
    assert (pressed.reply_id, pressed.text) == ("cancel-button", "Cancel")
    order = only_message(spec_examples["Order Message"])
    assert [i["product_retailer_id"] for i in order.items] == ["di9ozbzfi4", "nqryix03ez"]
    system = only_message(spec_examples["System Message"])
    assert system.kind == MessageKind.SYSTEM and "changed from" in (system.text or "")
    group = parse_webhook(spec_examples["Group Create Message"])
    assert [o.webhook_field for o in group.others] == ["group_lifecycle_update"]


def webhook_blocks_in_notes() -> list[dict[str, Any]]:
    """Every complete JSON webhook body quoted in the documentation of statuses and errors."""
    bodies: list[dict[str, Any]] = json.loads(DOCUMENTED_WEBHOOKS.read_text(encoding="utf-8"))
    return bodies


def test_status_and_error_payloads_of_the_notes_parse() -> None:
    bodies = webhook_blocks_in_notes()
    statuses = [s for body in bodies for s in parse_webhook(body).statuses]
    assert {s.status for s in statuses} >= {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
    }
    for status in statuses:
        assert status.message_id and status.at is not None
        if status.status == DeliveryStatus.FAILED:
            assert status.errors and status.errors[0].code > 0
    problems = [p for body in bodies for p in parse_webhook(body).problems]
    assert all(p.errors[0].code > 0 for p in problems)


def envelope(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"waba-{n}", "changes": list(changes)} for n in range(entries)],
    }


def text_change(count: int, *, prefix: str) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "85230001234", "phone_number_id": "PN1"},
            "contacts": [{"profile": {"name": "陳大文"}, "wa_id": "85291234567"}],
            "messages": [
                {
                    "from": "85291234567",
                    "id": f"wamid.{prefix}{n}",
                    "timestamp": "1763791200",
                    "type": "text",
                    "text": {"body": f"#{n}"},
                }
                for n in range(count)
            ],
            "statuses": [
                {
                    "id": f"wamid.out{prefix}",
                    "status": "delivered",
                    "timestamp": "1763791201",
                    "recipient_id": "85291234567",
                }
            ],
        },
    }


def test_every_entry_change_message_and_status_of_a_batch_is_handled() -> None:
    batch = parse_webhook(
        envelope(text_change(3, prefix="a"), text_change(3, prefix="b"), entries=2)
    )
    assert len(batch.messages) == 12 and len(batch.statuses) == 4
    assert len({m.message_id for m in batch.messages}) == 6  # the second entry repeats the first


def test_username_users_without_phone_fields_keep_a_stable_identity() -> None:
    change = text_change(1, prefix="x")
    value = change["value"]
    value["contacts"] = [
        {"profile": {"name": "Ploy", "username": "ploy.s"}, "user_id": "TH.1234567890"}
    ]
    del value["messages"][0]["from"]
    value["messages"][0]["from_user_id"] = "TH.1234567890"
    sender = only_message(envelope(change)).sender
    assert (sender.key, sender.phone_e164, sender.username) == (
        "bsuid:TH.1234567890",
        None,
        "ploy.s",
    )


def test_unknown_types_and_statuses_are_kept_not_fatal() -> None:
    change = text_change(1, prefix="u")
    change["value"]["messages"][0] |= {"type": "hologram", "hologram": {"x": 1}}
    change["value"]["statuses"][0]["status"] = "teleported"
    batch = parse_webhook(envelope(change))
    assert batch.messages[0].kind == MessageKind.UNKNOWN
    assert batch.messages[0].raw["hologram"] == {"x": 1}
    assert batch.statuses[0].status == DeliveryStatus.UNKNOWN


@pytest.mark.parametrize("body", [None, [], {"object": "page"}, {"entry": "nope"}])
def test_a_body_that_is_not_a_webhook_is_refused(body: Any) -> None:
    with pytest.raises(TidingsError) as caught:
        parse_webhook(body)
    assert caught.value.http_status == 400


def test_signatures_are_checked_on_the_exact_bytes() -> None:
    body = json.dumps(envelope(text_change(1, prefix="s")), ensure_ascii=True).encode()
    header = sign("app-secret", body)
    assert verify_signature("app-secret", body, header)
    assert not verify_signature("app-secret", body + b" ", header)
    assert not verify_signature("other-secret", body, header)
    assert not verify_signature("app-secret", body, None)
    assert not verify_signature("app-secret", body, header.removeprefix("sha256="))
    assert not verify_signature("", body, header)


def test_the_verification_handshake_echoes_only_for_the_right_token() -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert check_handshake(good, "tok") == "1158201444"
    assert check_handshake({**good, "hub.verify_token": "bad"}, "tok") is None
    assert check_handshake({**good, "hub.mode": "unsubscribe"}, "tok") is None
    assert check_handshake(good, "") is None


@pytest.mark.parametrize(
    ("current", "reported", "result"),
    [
        (None, DeliveryStatus.SENT, DeliveryStatus.SENT),
        (DeliveryStatus.SENT, DeliveryStatus.READ, DeliveryStatus.READ),
        (DeliveryStatus.READ, DeliveryStatus.DELIVERED, None),
        (DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED, None),
        (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.FAILED),
        (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, None),
        (DeliveryStatus.FAILED, DeliveryStatus.READ, None),
        (DeliveryStatus.SENT, DeliveryStatus.UNKNOWN, None),
    ],
)
def test_a_delivery_status_never_moves_backwards(
    current: DeliveryStatus | None, reported: DeliveryStatus, result: DeliveryStatus | None
) -> None:
    assert next_delivery_status(current, reported) == result


PROGRESS = [
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.PLAYED,
]


@given(st.lists(st.sampled_from(PROGRESS), min_size=1, max_size=12))
def test_in_any_arrival_order_a_message_ends_at_the_furthest_status_reported(
    reports: list[DeliveryStatus],
) -> None:
    current: DeliveryStatus | None = None
    for reported in reports:
        current = next_delivery_status(current, reported) or current
    assert current == max(reports, key=PROGRESS.index)
