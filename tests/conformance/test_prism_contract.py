"""Every outbound shape we produce, sent through the real adapter to Prism serving Meta's own
OpenAPI contract: Prism answers 422 for anything that does not fit the spec."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tidings.channels.whatsapp.client import (
    CloudApiClient,
    NumberEndpoint,
    message_payload,
    read_receipt_payload,
)
from tidings.egress.policy import EgressPolicy
from tidings.messaging.domain import check_outbound_content
from tidings.simulator.server import RunningSimulator, SimulatorConfig, start_simulator

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
    try:
        _await_port(port, process)
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


# --- Our WhatsApp simulator against the same contract --------------------------------------
# The simulator stands in for Meta in the demo, the browser tests and the benchmarks: what it
# answers and what it posts must be what Meta's document describes, or those would prove
# nothing about the real Cloud API.


@pytest.fixture(scope="module")
def simulator_behind_prism(prism: str) -> Iterator[tuple[str, SimulatorConfig, RunningSimulator]]:
    """The simulator, and Prism's validating proxy in front of it: every answer that passes
    through gets an ``sl-violations`` header listing how it departs from the contract."""
    config = SimulatorConfig(sent_delay=0.01, delivered_delay=0.02, read_delay=0.03, read_rate=1.0)
    config.update({"pair_interval": None})
    running = start_simulator(config)
    binary = _prism_binary()
    assert binary is not None  # the prism fixture checked
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "proxy", "--host", "127.0.0.1", "--port", str(port), str(SPEC), running.url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _await_port(port, process)
        yield f"http://127.0.0.1:{port}", config, running
    finally:
        process.terminate()
        process.wait(timeout=10)
        running.stop()


def _await_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert process.poll() is None, "Prism exited"
            assert time.monotonic() < deadline, "Prism did not start"
            time.sleep(0.3)


def test_the_simulator_answers_every_message_shape_as_the_contract_describes(
    simulator_behind_prism: tuple[str, SimulatorConfig, RunningSimulator],
) -> None:
    proxy, config, _ = simulator_behind_prism
    headers = {"Authorization": f"Bearer {config.access_token}"}
    with httpx.Client(base_url=proxy, headers=headers, timeout=30) as http:
        departures = {}
        for n, (name, shape) in enumerate(SHAPES.items()):
            answer = http.post(
                f"/v23.0/{config.phone_number_id}/messages",
                json=message_payload(f"+852912345{n:02d}", check_outbound_content(shape)),
            )
            assert answer.status_code == 200, (name, answer.text)
            if "sl-violations" in answer.headers:
                departures[name] = answer.headers["sl-violations"]
        templates = http.get(f"/v23.0/{config.business_account_id}/message_templates")
        uploaded = http.post(
            f"/v23.0/{config.phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": "image/png"},
            files={"file": ("tea.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")},
        )
        # The control: an answer the document does not describe is reported (it has no 401).
        refused = http.post(
            f"/v23.0/{config.phone_number_id}/messages",
            json=message_payload("+85291234599", SHAPES["text"]),
            headers={"Authorization": "Bearer not-the-token"},
        )
    assert departures == {}
    for answer in (templates, uploaded):
        assert answer.status_code == 200 and "sl-violations" not in answer.headers, answer.text
    assert refused.status_code == 401 and "status code" in refused.headers["sl-violations"]


def _capturing(bodies: list[bytes]) -> type[BaseHTTPRequestHandler]:
    """A webhook receiver that keeps every body posted to it and answers 200."""

    class Capture(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Capture


def test_every_webhook_the_simulator_posts_fits_the_contract(prism: str) -> None:
    """Statuses (sent, delivered, read, failed) and customers' messages (text and media), as
    the simulator posts them, each validated by Prism against the contract's webhook path.
    (The document puts its bearer scheme on every path, the webhook's too, so the replay
    carries a token; Meta's real webhooks are signed instead, as the simulator's are.)"""
    posted: list[bytes] = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _capturing(posted))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config = SimulatorConfig(
        sent_delay=0.01, delivered_delay=0.02, read_delay=0.03, read_rate=1.0, webhook_batch=1
    )
    config.update({"pair_interval": None})
    config.webhook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    running = start_simulator(config)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            token = {"Authorization": f"Bearer {config.access_token}"}
            for n, shape in enumerate(("text", "template without parameters", "image by id")):
                http.post(
                    f"/v23.0/{config.phone_number_id}/messages",
                    json=message_payload(f"+852912346{n:02d}", SHAPES[shape]),
                    headers=token,
                )
            config.update({"permanent_error_rate": 1.0})  # a send that fails after it left
            http.post(
                f"/v23.0/{config.phone_number_id}/messages",
                json=message_payload("+85291234650", SHAPES["text"]),
                headers=token,
            )
            http.post("/_simulator/customers/85291234567/messages", json={"text": "สวัสดีค่ะ"})
            http.post(
                "/_simulator/customers/85291234568/media",
                params={"caption": "the receipt"},
                content=b"\x89PNG\r\n\x1a\n" + bytes(64),
                headers={"content-type": "image/png"},
            )
        deadline = time.monotonic() + 30
        while running.simulator.webhooks.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.simulator.webhooks.pending() == 0
    finally:
        running.stop()
        receiver.shutdown()
    bodies = [json.loads(body) for body in posted]
    values = [change["value"] for body in bodies for e in body["entry"] for change in e["changes"]]
    statuses = {s["status"] for v in values for s in v.get("statuses", [])}
    kinds = {m["type"] for v in values for m in v.get("messages", [])}
    assert {"sent", "delivered", "read", "failed"} <= statuses and {"text", "image"} <= kinds
    # Statuses: validated by Prism against the contract's webhook path.
    refused = []
    with httpx.Client(base_url=prism, timeout=30) as http:
        for body in bodies:
            if not _of(body, "statuses"):
                continue
            answer = http.post(
                "/whatsapp/webhooks", json=body, headers={"Authorization": "Bearer x"}
            )
            if answer.status_code != 200:
                refused.append((answer.status_code, answer.text[:500], body))
        control = http.post(
            "/whatsapp/webhooks",
            json={"object": "whatsapp_business_account", "entry": [{"changes": "none"}]},
            headers={"Authorization": "Bearer x"},
        )
    assert refused == [], json.dumps(refused, ensure_ascii=False, indent=1)[:6000]
    assert control.status_code == 422  # the check is live: a malformed body is refused
    # Customers' messages: the contract's schema for them is its *outbound* message (it asks
    # for "to" and refuses "from", so its own examples fail it); they are held against its
    # examples instead — every field the simulator writes is one the example has, of the same
    # JSON type, and the media digest is base64, as Meta writes it.
    examples = yaml.safe_load(SPEC.read_text())["paths"]["/whatsapp/webhooks"]["post"][
        "requestBody"
    ]["content"]["application/json"]["examples"]
    for kind, example in (("text", "Text Message"), ("image", "Image Message")):
        [ours] = [b for b in bodies if _of(b, "messages") and _of(b, "messages")[0]["type"] == kind]
        assert _shape(ours) <= _shape(examples[example]["value"]), kind
    [image] = [b for b in bodies if (m := _of(b, "messages")) and m[0]["type"] == "image"]
    assert len(base64.b64decode(_of(image, "messages")[0]["image"]["sha256"])) == 32


def _of(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = body["entry"][0]["changes"][0]["value"].get(key, [])
    return found


def _shape(value: Any, path: str = "") -> set[tuple[str, str]]:
    """Every field's path (list items as ``[]``) with its JSON type."""
    if isinstance(value, dict):
        return set().union(
            *(_shape(v, f"{path}.{k}") for k, v in value.items()), {(path, "object")}
        )
    if isinstance(value, list):
        return set().union(*(_shape(v, f"{path}[]") for v in value), {(path, "array")})
    return {(path, type(value).__name__)}
