"""Many writers at once against a served Tidings: API clients, signed WhatsApp webhooks and web
sessions, with the worker running beside them — and not one answer is a server error.

On SQLite every write goes through one writer at a time; the requests' transactions may be
opened, used and committed on different threads, and the worker takes its turns in between.
``TIDINGS_CONCURRENCY_SECONDS`` sets how long the load lasts (30 s by default).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import Tenant
from tests.live import Stack, fast_config, live_stack
from tidings.bootstrap import Tidings
from tidings.channels.whatsapp.webhook import sign
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

SECONDS = float(os.environ.get("TIDINGS_CONCURRENCY_SECONDS", "30"))
AGENT_PASSWORD = "a long agent password"


CONFIG = fast_config()


@pytest.fixture
def stack(tidings: Tidings, tenant: Tenant) -> Iterator[Stack]:
    with live_stack(tidings, tenant, CONFIG) as running:
        yield running


class Tally:
    """Status codes by kind of writer, and the first server error of each kind."""

    def __init__(self) -> None:
        self.codes: Counter[tuple[str, int]] = Counter()
        self.errors: dict[str, str] = {}
        self.lock = threading.Lock()

    def record(self, kind: str, response: httpx.Response) -> None:
        with self.lock:
            self.codes[kind, response.status_code] += 1
            if response.status_code >= 500:
                self.errors.setdefault(kind, response.text[:500])

    def server_errors(self) -> int:
        """Answers 5xx, and requests the server dropped without an answer."""
        return sum(n for (_, code), n in self.codes.items() if code >= 500 or code == 0)

    def run(
        self, kind: str, send: Callable[..., httpx.Response], *args: Any, **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = send(*args, **kwargs)
        except httpx.TransportError as error:
            with self.lock:
                self.codes[kind, 0] += 1
                self.errors.setdefault(kind, repr(error))
            return None
        self.record(kind, response)
        return response

    def total(self, kind: str) -> int:
        return sum(n for (k, _), n in self.codes.items() if k == kind)


def webhook_batch(sender: int, serial: int) -> dict[str, Any]:
    phone = f"8869{sender:02d}{serial:06d}"[:12]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": CONFIG.display_phone_number,
                         "phone_number_id": CONFIG.phone_number_id},
            "contacts": [{"profile": {"name": f"Customer {sender}-{serial}"}, "wa_id": phone}],
            "messages": [{"from": phone, "id": f"wamid.load-{sender}-{serial}",
                          "timestamp": "1763791200", "type": "text",
                          "text": {"body": "還有貨嗎?"}}],
        }}]}],
    }  # fmt: skip


def api_writer(stack: Stack, tally: Tally, index: int, until: float) -> None:
    with httpx.Client(base_url=stack.app_url, headers=stack.tenant.headers(), timeout=60) as api:
        serial = 0
        while time.monotonic() < until:
            serial += 1
            body = {"name": f"Load {index}-{serial}", "tags": ["load"], "score": serial}
            created = tally.run("api", api.post, "/api/v1/contacts", json=body)
            if created is None or created.status_code != 201:
                continue
            path = f"/api/v1/contacts/{created.json()['id']}"
            tally.run("api", api.patch, path, json={"score": 1})
            event = {"type": "product.viewed", "properties": {"sku": "TEA-1"}}
            tally.run("api", api.post, f"{path}/events", json=event)


def webhook_sender(stack: Stack, tally: Tally, index: int, until: float) -> None:
    assert CONFIG.webhook_url is not None
    url = CONFIG.webhook_url
    with httpx.Client(timeout=60) as client:
        serial = 0
        while time.monotonic() < until:
            serial += 1
            raw = json.dumps(webhook_batch(index, serial)).encode()
            headers = {
                "content-type": "application/json",
                "x-hub-signature-256": sign(CONFIG.app_secret, raw),
            }
            tally.run("webhook", client.post, url, content=raw, headers=headers)


def web_agent(stack: Stack, tally: Tally, agent: tuple[str, int], until: float) -> None:
    email, user_id = agent
    with httpx.Client(base_url=stack.app_url, timeout=60, follow_redirects=False) as web:
        form = {"workspace": stack.tenant.slug, "email": email, "password": AGENT_PASSWORD}
        tally.run("web", web.post, "/app/login", data=form)
        page = web.get("/app/inbox").text
        csrf = {"X-CSRF-Token": page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]}
        serial = 0
        while time.monotonic() < until:
            serial += 1
            listed = tally.run("web", web.get, "/api/v1/conversations?limit=5")
            items = listed.json()["items"] if listed is not None and listed.is_success else []
            for conversation in items[:1]:
                path = f"/api/v1/conversations/{conversation['id']}"
                mine = {"assignee_id": user_id}
                note = {"body": f"note {serial}"}
                tally.run("web", web.post, f"{path}/assign", json=mine, headers=csrf)
                tally.run("web", web.post, f"{path}/notes", json=note, headers=csrf)
            contact = {"name": f"{email} {serial}"}
            tally.run("web", web.post, "/api/v1/contacts", json=contact, headers=csrf)


def add_agents(tidings: Tidings, tenant: Tenant, count: int) -> list[tuple[str, int]]:
    agents = []
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        for i in range(count):
            user = workspaces.create_user(
                session, workspace=workspace, email=f"agent{i}@load.example", name=f"Agent {i}",
                role=Role.AGENT, password=AGENT_PASSWORD, granted_by=Role.OWNER,
                now=tidings.clock.now(),
            )  # fmt: skip
            agents.append((user.email, user.id))
    return agents


def test_twenty_concurrent_writers_and_the_worker_get_no_server_error(stack: Stack) -> None:
    agents = add_agents(stack.tidings, stack.tenant, 4)
    tally = Tally()
    until = time.monotonic() + SECONDS
    worker_thread = threading.Thread(target=stack.worker.run_forever, daemon=True)
    stack.worker.poll_seconds = 0.05
    writers: list[tuple[Callable[..., None], Any]] = [
        *[(api_writer, i) for i in range(12)],
        *[(webhook_sender, i) for i in range(4)],
        *[(web_agent, agent) for agent in agents],
    ]
    threads = [
        threading.Thread(target=work, args=(stack, tally, arg, until), daemon=True)
        for work, arg in writers
    ]
    worker_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 120)
    stack.worker.stop()
    worker_thread.join(timeout=60)

    assert len(threads) >= 20
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert tally.server_errors() == 0, (dict(tally.codes), tally.errors)
    # Every kind of writer really wrote, and mostly succeeded.
    for kind in ("api", "webhook", "web"):
        ok = sum(n for (k, code), n in tally.codes.items() if k == kind and code < 300)
        assert ok >= 10 and ok >= 0.9 * tally.total(kind), (kind, dict(tally.codes))
    # Nothing acknowledged was lost: every accepted webhook becomes a stored customer message.
    accepted = sum(n for (k, code), n in tally.codes.items() if k == "webhook" and code == 200)
    started = time.monotonic()
    stack.worker.stop_event.clear()
    stack.drain(lambda: inbound_messages(stack.tidings) >= accepted, timeout=300)
    print(f"{dict(tally.codes)}; {accepted} inbound drained in {time.monotonic() - started:.1f} s")
    assert inbound_messages(stack.tidings) == accepted


def inbound_messages(tidings: Tidings) -> int:
    with tidings.db.reading() as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM messages WHERE direction = 'in'")
            ).scalar_one()
        )


def test_a_client_sending_slowly_holds_up_no_other_writer(stack: Stack) -> None:
    """An import whose body trickles in for 3 s: meanwhile other writes answer at once."""

    def trickle() -> Iterator[bytes]:
        yield b"phone,name\n"
        for i in range(15):
            time.sleep(0.2)
            yield f"+88691234{i:04d},Slow {i}\n".encode()

    outcome: dict[str, httpx.Response] = {}

    def slow_import() -> None:
        with httpx.Client(base_url=stack.app_url, headers=stack.tenant.headers(), timeout=60) as c:
            outcome["import"] = c.post(
                "/api/v1/contacts/import", content=trickle(), headers={"content-type": "text/csv"}
            )

    sender = threading.Thread(target=slow_import)
    sender.start()
    time.sleep(0.5)  # the import is under way, its body still arriving
    latencies = []
    for i in range(10):
        started = time.monotonic()
        created = stack.api.post("/api/v1/contacts", json={"name": f"Quick {i}"})
        latencies.append(time.monotonic() - started)
        assert created.status_code == 201, created.text
    assert sender.is_alive(), "the slow body should still have been arriving"
    sender.join(timeout=30)
    assert outcome["import"].status_code == 200, outcome["import"].text
    assert outcome["import"].json()["created"] == 15
    # Each quick write took far less than the 3 s the slow body took to arrive.
    assert max(latencies) < 1.5, latencies


def test_a_large_import_lets_other_writers_in_between_its_batches(stack: Stack) -> None:
    """60,000 rows through the API go in batch by batch: webhooks and agents' writes are
    answered while the import is still running, not after it."""
    rows = "".join(f"+8869{i:08d},Imported {i}\n" for i in range(60_000))
    csv_body = ("phone,name\n" + rows).encode()
    outcome: dict[str, httpx.Response] = {}

    def big_import() -> None:
        with httpx.Client(base_url=stack.app_url, headers=stack.tenant.headers(), timeout=300) as c:
            outcome["import"] = c.post(
                "/api/v1/contacts/import", content=csv_body, headers={"content-type": "text/csv"}
            )

    importer = threading.Thread(target=big_import)
    importer.start()
    deadline = time.monotonic() + 60
    while contacts_stored(stack.tidings) == 0:  # its first batch is in
        assert time.monotonic() < deadline and importer.is_alive(), "the import did not start"
        time.sleep(0.02)
    for i in range(5):
        raw = json.dumps(webhook_batch(99, i)).encode()
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": sign(CONFIG.app_secret, raw),
        }
        assert CONFIG.webhook_url is not None
        assert httpx.post(CONFIG.webhook_url, content=raw, headers=headers).status_code == 200
        created = stack.api.post("/api/v1/contacts", json={"name": f"Walk-in {i}"})
        assert created.status_code == 201, created.text
    assert importer.is_alive(), "the writes above should have gone in between the import's batches"
    importer.join(timeout=300)
    assert outcome["import"].status_code == 200, outcome["import"].text
    assert outcome["import"].json()["created"] == 60_000


def contacts_stored(tidings: Tidings) -> int:
    with tidings.db.reading() as session:
        return int(session.execute(text("SELECT count(*) FROM contacts")).scalar_one())


def test_a_background_import_is_answered_at_once_and_writers_go_in_between_its_batches(
    stack: Stack,
) -> None:
    """60,000 rows sent to ``/contacts/imports``: the answer comes before any row is read,
    the worker reads the file batch by batch, and webhooks and agents' writes are answered
    while it does."""
    rows = "".join(f"+88697{i:07d},Background {i}\n" for i in range(60_000))
    answer = stack.api.post(
        "/api/v1/contacts/imports",
        content=("phone,name\n" + rows).encode(),
        headers={"content-type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    location = answer.headers["location"]
    assert contacts_stored(stack.tidings) == 0
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            stack.worker.run_once()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while stack.api.get(location).json()["rows"] == 0:
            assert time.monotonic() < deadline, "the worker did not start the import"
            time.sleep(0.02)
        answered_while_running = 0
        for i in range(5):
            raw = json.dumps(webhook_batch(98, i)).encode()
            headers = {
                "content-type": "application/json",
                "x-hub-signature-256": sign(CONFIG.app_secret, raw),
            }
            assert CONFIG.webhook_url is not None
            assert httpx.post(CONFIG.webhook_url, content=raw, headers=headers).status_code == 200
            created = stack.api.post("/api/v1/contacts", json={"name": f"Walk-in {i}"})
            assert created.status_code == 201, created.text
            answered_while_running += stack.api.get(location).json()["status"] == "running"
        # At least the first webhook and write were answered before the import was done
        # (all of them, on a quiet machine): they did not wait for it to finish.
        assert answered_while_running >= 1, "the writes waited for the import"
        while (progress := stack.api.get(location).json())["status"] == "running":
            assert time.monotonic() < deadline, progress
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert (progress["status"], progress["created"], progress["failed"]) == ("done", 60_000, 0)
