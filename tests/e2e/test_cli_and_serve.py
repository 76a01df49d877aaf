"""The product driven as a person drives it: the ``tidings`` command and a running server."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import TIDINGS, free_port, serve_demo, tidings_env


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return tidings_env(database_url, tmp_path)


def tidings(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDINGS, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_init_key_import_export_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    init = tidings(env, "init", "--slug", "hk", "--region", "HK", "--timezone", "Asia/Hong_Kong")
    assert init.returncode == 0, init.stderr
    assert "tid_" in init.stdout
    again = tidings(env, "init")
    assert again.returncode == 0 and "up to date" in again.stdout
    key = tidings(env, "apikey", "create", "--name", "zapier", "--role", "agent")
    assert key.returncode == 0 and key.stdout.strip().startswith("tid_")
    source = tmp_path / "people.csv"
    source.write_text("name,phone,tags\n陳大文,9123 4567,vip\nBad,123,\n", encoding="utf-8-sig")
    imported = tidings(env, "contacts", "import", str(source))
    assert imported.returncode == 1  # some rows rejected
    assert "line 3" in imported.stderr and "phone" in imported.stderr
    assert (tmp_path / "people.errors.csv").read_text(encoding="utf-8").count("\n") == 2
    target = tmp_path / "out.csv"
    exported = tidings(env, "contacts", "export", str(target))
    assert exported.returncode == 0, exported.stderr
    assert "+85291234567" in target.read_text(encoding="utf-8")
    clean = tidings(env, "contacts", "import", str(target))
    assert clean.returncode == 0, clean.stderr


def test_cli_errors_are_messages_not_tracebacks(env: dict[str, str], tmp_path: Path) -> None:
    tidings(env, "init")
    missing = tidings(env, "contacts", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad_map = tidings(env, "contacts", "import", str(tmp_path / "nope.csv"), "--map", "oops")
    assert bad_map.returncode == 2 and "COLUMN=FIELD" in bad_map.stderr


def test_serve_refuses_the_placeholder_secret_outside_demo(env: dict[str, str]) -> None:
    unsafe = {k: v for k, v in env.items() if k != "TIDINGS_SECRET_KEY"}
    result = tidings(unsafe, "serve", "--port", str(free_port()))
    assert result.returncode == 2 and "TIDINGS_SECRET_KEY" in result.stderr


@pytest.fixture
def demo_server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    with serve_demo(env, tmp_path) as running:
        yield running


def test_serve_demo_answers_with_a_seeded_workspace_and_a_live_worker(
    demo_server: tuple[str, str],
) -> None:
    base, key = demo_server
    headers = {"Authorization": f"Bearer {key}"}
    contacts = httpx.get(f"{base}/api/v1/contacts", params={"limit": 100}, headers=headers).json()[
        "items"
    ]
    assert len(contacts) >= 16
    assert {"HK", "TW", "TH"} <= {c["country"] for c in contacts}
    assert any("สมชาย" in (c["name"] or "") for c in contacts)
    health = httpx.get(f"{base}/health").json()
    deadline = time.monotonic() + 60  # a loaded machine starts slowly; the wait ends at once
    while health["workers_alive"] < 1 and time.monotonic() < deadline:
        time.sleep(0.3)
        health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["workers_alive"] == 1
    assert httpx.get(f"{base}/docs").status_code == 200


def test_worker_stops_gracefully_on_sigterm(env: dict[str, str]) -> None:
    """SIGTERM once the worker says it runs (however long start-up takes under load)."""
    tidings(env, "init")
    process = subprocess.Popen(
        [*TIDINGS, "worker"],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    seen: list[str] = []
    while not any("running; Ctrl-C stops it" in line for line in seen):
        try:
            seen.append(lines.get(timeout=60))
        except queue.Empty:
            process.kill()
            pytest.fail(f"the worker did not say it runs within 60 s: {seen}")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, seen
    reader.join(timeout=10)  # it ends with the output
    while not lines.empty():
        seen.append(lines.get())
    assert any("stopped" in line for line in seen), seen


@pytest.mark.parametrize("after", [0.3, 0.8, 1.5])
def test_sigterm_while_the_worker_is_still_starting_ends_it_with_exit_code_0(
    env: dict[str, str], after: float
) -> None:
    """A deploy that stops a worker it just started (under load, start-up takes seconds).
    Only the interpreter's own first milliseconds, before any of our code runs, are left to
    the signal's default (the process has done nothing yet)."""
    tidings(env, "init")
    process = subprocess.Popen(
        [*TIDINGS, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(after)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "stopped" in output and "Traceback" not in output


def test_in_the_demo_a_customer_writes_an_agent_replies_and_sees_the_ticks(
    demo_server: tuple[str, str],
) -> None:
    base, key = demo_server
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    (number,) = api.get("/api/v1/whatsapp-numbers").json()
    # Served on --port P with no public URL configured: the URL to paste into Meta names P.
    assert number["webhook_url"].startswith(f"{base}/webhooks/whatsapp/"), number["webhook_url"]
    simulator = number["api_base_url"]
    httpx.post(
        f"{simulator}/_simulator/customers/85269871234/messages",
        json={"text": "Hi, is the Galaxy S24 Ultra in stock?"},
    )

    def wait_for(probe: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.3)
        pytest.fail(f"{what} did not happen within 30 s")

    def emily() -> dict[str, Any] | None:
        for conversation in api.get("/api/v1/conversations").json()["items"]:
            thread = api.get(f"/api/v1/conversations/{conversation['id']}/messages").json()
            if any("S24" in (m["text"] or "") for m in thread["items"]):
                found: dict[str, Any] = conversation
                return found
        return None

    conversation = wait_for(emily, "the customer's message arriving")
    reply = api.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "Yes! 2 left in Causeway Bay."},
    )
    assert reply.status_code == 202, reply.text
    message_id = reply.json()["id"]
    delivered = wait_for(
        lambda: (m := api.get(f"/api/v1/messages/{message_id}").json())["delivered_at"] and m,
        "the delivered tick",
    )
    assert delivered["status"] in ("delivered", "read") and delivered["provider_message_id"]
    ledger = httpx.get(f"{simulator}/_simulator/ledger").json()["entries"]
    assert [e["message_id"] for e in ledger if e["outcome"] == "accepted"] == [
        delivered["provider_message_id"]
    ]
