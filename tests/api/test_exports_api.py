"""Backups and exports (X4, C6): incremental exports as gzip JSON Lines that stay readable,
the 02:00 export of unread conversations in the workspace's time zone, once a day, and
archives pruned after the retention period."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi.testclient import TestClient

from tests.api.test_automation_rules import says
from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.exports import service as exports
from tidings.kernel.clock import VirtualClock
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

API = "/api/v1"


def write(client: TestClient, tidings: Tidings, path: str, wa_id: str, words: str) -> None:
    """A customer's message, taken in by the worker without its periodic tasks: the daily
    export is what some of these tests call by hand."""
    assert post(client, path, says(tidings, words, wa_id=wa_id)).status_code == 200
    worker = tidings.make_worker(sources=tidings.work_sources)
    worker.periodic = []
    for _ in range(3):
        worker.run_once()
        tidings.clock.advance(timedelta(seconds=3))  # type: ignore[attr-defined]


def rows_of(client: TestClient, tenant: Tenant, run_id: int, stream: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/exports/{run_id}/{stream}", headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    return [orjson.loads(line) for line in gzip.decompress(answer.content).splitlines()]


def export(client: TestClient, tenant: Tenant, kind: str = "incremental") -> dict[str, Any]:
    answer = client.post(f"{API}/exports", json={"kind": kind}, headers=tenant.headers())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_incremental_exports_hold_what_changed_since_the_last(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str, clock: VirtualClock
) -> None:
    write(client, tidings, webhook_path, "66811111111", "สวัสดีค่ะ")
    write(client, tidings, webhook_path, "66822222222", "มีส่วนลดไหมคะ")
    first = export(client, tenant)
    counts = {f["stream"]: f["rows"] for f in first["files"]}
    assert counts["contacts"] == 2 and counts["conversations"] == 2 and counts["messages"] == 2
    assert counts["events"] >= 4  # contact.created and message.received, at least
    phones = {r["phone"] for r in rows_of(client, tenant, first["id"], "contacts")}
    assert phones == {"+66811111111", "+66822222222"}
    texts = {r["text"] for r in rows_of(client, tenant, first["id"], "messages")}
    assert texts == {"สวัสดีค่ะ", "มีส่วนลดไหมคะ"}

    clock.advance(timedelta(minutes=5))
    nothing = export(client, tenant)
    assert {f["stream"]: f["rows"] for f in nothing["files"]} == {
        "contacts": 0,
        "conversations": 0,
        "messages": 0,
        "events": 0,
    }
    clock.advance(timedelta(minutes=5))
    write(client, tidings, webhook_path, "66811111111", "ขอบคุณค่ะ")
    clock.advance(timedelta(minutes=5))
    later = export(client, tenant)
    changed = {f["stream"]: f["rows"] for f in later["files"]}
    assert changed["messages"] == 1 and changed["conversations"] == 1 and changed["contacts"] == 0
    assert [r["text"] for r in rows_of(client, tenant, later["id"], "messages")] == ["ขอบคุณค่ะ"]
    listed = client.get(f"{API}/exports", headers=tenant.headers()).json()
    assert [r["id"] for r in listed] == [later["id"], nothing["id"], first["id"]]


def test_unread_conversations_go_out_at_two_in_the_morning_local_time_once_a_day(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str, clock: VirtualClock
) -> None:
    write(client, tidings, webhook_path, "66811111111", "ของจะมาถึงเมื่อไหร่คะ")
    write(client, tidings, webhook_path, "66822222222", "ขอบคุณค่ะ")
    conversations = client.get(f"{API}/conversations", headers=tenant.headers()).json()["items"]
    answered = next(c for c in conversations if c["contact_phone"] == "+66822222222")
    client.post(f"{API}/conversations/{answered['id']}/resolve", headers=tenant.headers())

    root = tidings.exports_root
    zone = ZoneInfo("Asia/Taipei")  # the tenant's time zone
    local = clock.now().astimezone(zone)
    next_two = datetime(local.year, local.month, local.day, 2, 0, tzinfo=zone) + timedelta(days=1)
    clock.set(next_two - timedelta(minutes=1))
    with tidings.db.transaction() as session:
        assert exports.daily(session, root=root, now=clock.now()) == 0  # 01:59: not yet
    clock.advance(timedelta(minutes=2))
    with tidings.db.transaction() as session:
        assert exports.daily(session, root=root, now=clock.now()) == 1
    clock.advance(timedelta(hours=3))
    with tidings.db.transaction() as session:
        assert exports.daily(session, root=root, now=clock.now()) == 0  # once a day

    runs = client.get(f"{API}/exports", headers=tenant.headers()).json()
    unread = next(r for r in runs if r["kind"] == "unread")
    assert unread["local_day"] == next_two.date().isoformat()
    [waiting] = rows_of(client, tenant, unread["id"], "conversations")
    assert (waiting["phone"], waiting["last_message"]) == ("+66811111111", "ของจะมาถึงเมื่อไหร่คะ")
    assert waiting["waiting_minutes"] >= 60 * 11
    assert any(r["kind"] == "incremental" and r["local_day"] for r in runs)


def test_archives_older_than_the_retention_are_pruned_and_the_rest_stay_readable(
    tidings: Tidings, tenant: Tenant, clock: VirtualClock
) -> None:
    root: Path = tidings.exports_root
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        recent = exports.run_incremental(session, workspace=workspace, root=root, now=clock.now())
    old_folder = root / tenant.slug / (clock.now() - timedelta(days=181)).strftime("%Y/%m/%d")
    old_folder.mkdir(parents=True)
    with gzip.open(old_folder / "incremental-contacts-020000.jsonl.gz", "wb") as out:
        out.write(b'{"id": 1}\n')
    with tidings.db.reading() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        removed = exports.prune(workspace=workspace, root=root, today=clock.now().date())
    assert removed == 1 and not old_folder.joinpath("incremental-contacts-020000.jsonl.gz").exists()
    kept = root / recent.files["files"][0]["path"]
    assert kept.exists() and list(exports.read_file(kept)) == []  # empty, and still readable


def test_exports_need_an_admin_and_stay_inside_the_workspace(
    client: TestClient, tenant: Tenant, tidings: Tidings
) -> None:
    bad = client.post(f"{API}/exports", json={"kind": "everything"}, headers=tenant.headers())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
    agent = client.post(f"{API}/exports", json={}, headers=tenant.headers(Role.AGENT))
    assert agent.status_code == 403
    mine = export(client, tenant)
    other = make_tenant(tidings, "other-shop")
    stolen = client.get(f"{API}/exports/{mine['id']}/contacts", headers=other.headers())
    assert stolen.status_code == 404
    missing = client.get(f"{API}/exports/{mine['id']}/passwords", headers=tenant.headers())
    assert missing.status_code == 404
