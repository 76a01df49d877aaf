"""Every outbound shape we produce, sent through the real adapter to Prism serving Meta's own
OpenAPI contract: Prism answers 422 for anything that does not fit the spec."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidings.channels.whatsapp.client import CloudApiClient, NumberEndpoint, read_receipt_payload
from tidings.egress.policy import EgressPolicy
from tidings.messaging.domain import check_outbound_content

ROOT = Path(__file__).resolve().parents[2]
# Meta's contract, vendored with its licence (MIT) beside it.
SPEC = ROOT / "tests" / "contracts" / "whatsapp-business-messaging-api_v23.0.yaml"
LOCAL_PRISM = ROOT / ".tools" / "prism" / "node_modules" / ".bin" / "prism"


def _prism_binary() -> str | None:
    chosen = os.environ.get("TIDINGS_PRISM")
    if chosen:
        return chosen
    if LOCAL_PRISM.exists():
        return str(LOCAL_PRISM)
    return shutil.which("prism")


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    binary = _prism_binary()
    if binary is None or not SPEC.exists():
        message = (
            "Prism or the contract is missing: "
            "npm install --prefix .tools/prism @stoplight/prism-cli@5"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs Prism: its absence is a broken build, not a skip
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "mock", "--host", "127.0.0.1", "--port", str(port), str(SPEC)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, "Prism exited"
                assert time.monotonic() < deadline, "Prism did not start"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


TEMPLATE: dict[str, Any] = {
    "type": "template",
    "template": {
        "name": "seasonal_promotion",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": "https://x.example/p.jpg"}}],
            },
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "林怡君"},
                    {
                        "type": "currency",
                        "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000},
                    },
                    {"type": "date_time", "date_time": {"fallback_value": "August 31, 2026"}},
                ],
            },
            # Index "0" is refused by the contract's pattern ^[2-6, 11-14]$ (a character class:
            # one of 1-6, ',' or ' '), although its own description says 0-9 and its example is
            # "0"; the shape is the same for every index, so the test uses 1 and 2.
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "unsub_promos:campaign=42"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": "2",
                "parameters": [{"type": "text", "text": "ORD-67890"}],
            },
        ],
    },
}
SHAPES: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "สวัสดีค่ะ"}},
    "text with preview": {
        "type": "text",
        "text": {"body": "ดูสินค้า https://shop.example/p/1", "preview_url": True},
    },
    "text quoting a message": {
        "type": "text",
        "text": {"body": "ได้ค่ะ"},
        "context": {"message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUZCMTY0"},
    },
    "template with header, body and buttons": TEMPLATE,
    "template without parameters": {
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    },
    "image by id": {"type": "image", "image": {"id": "1479537139650973", "caption": "新款"}},
    "image by link": {"type": "image", "image": {"link": "https://x.example/a.jpg"}},
    "document by id": {
        "type": "document",
        "document": {"id": "1479537139650974", "filename": "invoice.pdf", "caption": "Invoice"},
    },
    "document by link": {
        "type": "document",
        "document": {"link": "https://x.example/invoice.pdf", "filename": "invoice.pdf"},
    },
    "audio": {"type": "audio", "audio": {"id": "1479537139650975"}},
    "video": {"type": "video", "video": {"link": "https://x.example/v.mp4", "caption": "Demo"}},
    "sticker": {"type": "sticker", "sticker": {"id": "1479537139650976"}},
    "reply buttons": {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Change or cancel your pickup?"},
            "footer": {"text": "Demo shop"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "change", "title": "Change"}},
                    {"type": "reply", "reply": {"id": "cancel", "title": "Cancel"}},
                ]
            },
        },
    },
    "list": {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "header": {"type": "text", "text": "Shipping"},
            "body": {"text": "Which shipping option do you prefer?"},
            "action": {
                "button": "Options",
                "sections": [
                    {
                        "title": "Fast",
                        "rows": [
                            {"id": "express", "title": "Express", "description": "Next day"},
                            {"id": "standard", "title": "Standard", "description": "2-4 days"},
                        ],
                    }
                ],
            },
        },
    },
    "reaction": {
        "type": "reaction",
        "reaction": {"message_id": "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUZC", "emoji": "👍"},
    },
    "location": {
        "type": "location",
        "location": {"latitude": 13.7466, "longitude": 100.5393, "name": "Siam store"},
    },
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_prism_accepts_every_outbound_message_shape(prism: str, name: str) -> None:
    client = CloudApiClient(policy=EgressPolicy.of(["127.0.0.0/8"]))  # Prism on loopback
    endpoint = NumberEndpoint(prism, "v23.0", "106540352242922", "test-token")
    outcome = client.send_message(endpoint, "+85291234567", check_outbound_content(SHAPES[name]))
    client.close()
    assert outcome.accepted, outcome.error.message if outcome.error else outcome.note
    assert outcome.message_id and outcome.message_id.startswith("wamid.")


def test_the_read_receipt_is_the_contracts_own_example() -> None:
    """The contract's request schema admits no read receipt (its own example fails Prism's
    validation), so the shape is checked against Meta's example in the same contract."""
    spec = yaml.safe_load(SPEC.read_text())
    examples = spec["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"]["requestBody"][
        "content"
    ]["application/json"]["examples"]
    example = examples["Send typing indicator and read receipt"]["value"]
    ours = read_receipt_payload(example["message_id"], typing=True)
    assert ours == example
