"""A signed batch is never lost, whatever one update in it holds (#22).

Each update is processed on its own: one that cannot be understood is quarantined with the
reason and the raw JSON, the rest of its batch is stored; one that keeps failing joins the
quarantine after its retries; admins list and replay them over the API and the command line,
and ``/health`` counts them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_whatsapp_inbound_processing import contacts, timeline
from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant
from tests.e2e.test_cli_and_serve import tidings as run_cli
from tests.serving import tidings_env
from tidings.bootstrap import Tidings
from tidings.channels import jobs
from tidings.channels import service as channel_service
from tidings.channels.jobs import MAX_ATTEMPTS
from tidings.kernel.clock import VirtualClock
from tidings.workspaces.domain import Role

API = "/api/v1"
QUARANTINE = f"{API}/whatsapp/quarantine"


def drain(tidings: Tidings, clock: VirtualClock | None = None, passes: int = 3) -> None:
    for _ in range(passes):
        tidings.make_worker().run_once()
        if clock is not None:
            clock.advance(timedelta(minutes=11))


def poisoned_batch(poison: dict[str, Any]) -> dict[str, Any]:
    """Two good messages with one poisoned message between them, in one signed POST."""
    body = batch("wamid.good1", "wamid.bad", "wamid.good2")
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages[1].update(poison)
    return body


def received_wamids(client: TestClient, tenant: Tenant) -> list[str]:
    found = []
    for contact in contacts(client, tenant):
        found += [m["properties"]["wamid"] for m in timeline(client, tenant, contact["id"])]
    return sorted(found)


def quarantine(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    answer = client.get(QUARANTINE, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        ({"from": {"wa_id": "85291234567"}}, "messages[].from"),
        ({"from": ["85291234567"]}, "messages[].from"),
        ({"id": {"nested": "wamid.bad"}}, "messages[].id"),
        ({"type": {"text": "x"}}, "messages[].type"),
    ],
)
def test_one_poisoned_update_is_quarantined_and_the_rest_of_its_batch_is_stored(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    poison: dict[str, Any],
    reason: str,
) -> None:
    body = poisoned_batch(poison)
    assert post(client, webhook_path, body).status_code == 200
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.good1", "wamid.good2"]
    page = quarantine(client, tenant)
    assert page["total"] == 1
    (item,) = page["items"]
    assert item["kind"] == "message" and reason in item["reason"]
    (kept,) = item["raw"]["entry"][0]["changes"][0]["value"]["messages"]
    assert kept == body["entry"][0]["changes"][0]["value"]["messages"][1]  # as Meta sent it
    health = client.get("/health").json()
    assert health["webhook_updates_quarantined"] == 1
    assert health["attention"] == ["webhook_quarantine"]


def test_a_nul_character_or_a_lone_surrogate_costs_neither_the_message_nor_its_batch(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """PostgreSQL refuses both in ``jsonb``; the message is kept with U+FFFD in their place."""
    body = batch("wamid.nul", "wamid.next")
    first = body["entry"][0]["changes"][0]["value"]["messages"][0]
    first["text"]["body"] = "order\x00 #12 \ud83d"
    body["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "陳\x00大文"
    assert post(client, webhook_path, body).status_code == 200
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.next", "wamid.nul"]
    (contact,) = contacts(client, tenant)
    texts = {
        m["properties"]["wamid"]: m["properties"]["text"]
        for m in timeline(client, tenant, contact["id"])
    }
    assert texts["wamid.nul"] == "order\ufffd #12 \ufffd"
    assert contact["name"] == "陳\ufffd大文"
    assert quarantine(client, tenant)["total"] == 0


def test_an_id_too_long_for_any_column_is_quarantined_once_not_cut(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    long_id = "wamid." + "A" * 400
    post(client, webhook_path, batch(long_id, "wamid.short"))
    post(client, webhook_path, batch(long_id))  # Meta resends it
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.short"]
    (item,) = quarantine(client, tenant)["items"]
    assert "406 characters" in item["reason"] and len(item["key"]) <= 300
    assert item["raw"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"] == long_id


@pytest.fixture
def failing_intake(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Filing a message fails (a fault injected where the database would fail) while the
    switch is on."""
    switch = [True]
    one, many = jobs.record_inbound_message, jobs.record_inbound_messages

    def record(*args: Any, **kwargs: Any) -> Any:
        if switch[0]:
            raise RuntimeError("the contacts table is locked by a migration")
        return one(*args, **kwargs)

    def record_together(*args: Any, **kwargs: Any) -> Any:
        if switch[0]:  # the batch fails too: each message is then taken on its own
            raise RuntimeError("the contacts table is locked by a migration")
        return many(*args, **kwargs)

    monkeypatch.setattr(jobs, "record_inbound_message", record)
    monkeypatch.setattr(jobs, "record_inbound_messages", record_together)
    return switch


def test_an_update_that_keeps_failing_is_quarantined_and_replayed_once_fixed(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    clock: VirtualClock,
    failing_intake: list[bool],
) -> None:
    post(client, webhook_path, batch("wamid.retry"))
    drain(tidings, clock, passes=MAX_ATTEMPTS + 2)
    (item,) = quarantine(client, tenant)["items"]
    assert item["attempts"] == MAX_ATTEMPTS and "locked by a migration" in item["reason"]
    assert contacts(client, tenant) == []

    failing_intake[0] = False  # the cause is fixed
    answer = client.post(
        f"{QUARANTINE}/replay", json={"ids": [item["id"]]}, headers=tenant.headers()
    )
    assert answer.status_code == 200 and answer.json() == {"replayed": 1}
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.retry"]
    assert quarantine(client, tenant)["total"] == 0
    assert client.get("/health").json()["attention"] == []
    # Replaying again changes nothing: the message is filed once.
    again = client.post(f"{QUARANTINE}/replay", json={"all": True}, headers=tenant.headers())
    assert again.json() == {"replayed": 0}


def test_a_post_that_cannot_be_split_is_quarantined_whole_and_split_on_replay(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = channel_service.split_webhook

    def broken(payload: Any) -> Any:
        raise MemoryError("injected")

    monkeypatch.setattr(channel_service, "split_webhook", broken)
    post(client, webhook_path, batch("wamid.a", "wamid.b"))
    for _ in range(MAX_ATTEMPTS):
        tidings.make_worker().run_once()
    (item,) = quarantine(client, tenant)["items"]
    assert item["kind"] == "delivery" and "MemoryError" in item["reason"]
    assert len(item["raw"]["entry"][0]["changes"][0]["value"]["messages"]) == 2

    monkeypatch.setattr(channel_service, "split_webhook", real)
    client.post(f"{QUARANTINE}/replay", json={"all": True}, headers=tenant.headers())
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.a", "wamid.b"]
    assert quarantine(client, tenant)["total"] == 0


@pytest.mark.postgres_only
def test_on_postgresql_an_update_the_database_refuses_is_kept_as_text_beside_the_rest(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last line of defence: had a character slipped past the cleaning, the batch is filed
    update by update, and the refused one is kept quarantined as escaped JSON text. (SQLite
    stores any text: the refusal is PostgreSQL's.)"""
    monkeypatch.setattr("tidings.channels.whatsapp.webhook.storable", lambda value: value)
    body = batch("wamid.ok", "wamid.nul")
    body["entry"][0]["changes"][0]["value"]["messages"][1]["text"]["body"] = "a\x00b"
    post(client, webhook_path, body)
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.ok"]
    (item,) = quarantine(client, tenant)["items"]
    assert item["key"].startswith("unstorable:") and "could not be stored" in item["reason"]
    assert item["raw"]["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "a\x00b"


def test_replay_answers_clear_errors_and_only_admins_see_the_quarantine(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    post(client, webhook_path, poisoned_batch({"from": {"x": 1}}))
    drain(tidings)
    replay = f"{QUARANTINE}/replay"
    for body, field in (({}, "ids"), ({"ids": [1], "all": True}, "ids"), ({"ids": []}, "ids")):
        answer = client.post(replay, json=body, headers=tenant.headers())
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, body
    missing = client.post(replay, json={"ids": [987654]}, headers=tenant.headers())
    assert missing.status_code == 404
    assert client.get(QUARANTINE, headers=tenant.headers(Role.AGENT)).status_code == 403
    assert (
        client.post(replay, json={"all": True}, headers=tenant.headers(Role.AGENT)).status_code
        == 403
    )
    assert (
        client.get(QUARANTINE, params={"cursor": "x"}, headers=tenant.headers()).status_code == 422
    )


def test_another_workspace_neither_sees_nor_replays_the_quarantine(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    from tests.conftest import make_tenant

    post(client, webhook_path, poisoned_batch({"from": {"x": 1}}))
    drain(tidings)
    (item,) = quarantine(client, tenant)["items"]
    other = make_tenant(tidings, "other-shop")
    assert quarantine(client, other) == {"items": [], "total": 0, "next_cursor": None}
    answer = client.post(
        f"{QUARANTINE}/replay", json={"ids": [item["id"]]}, headers=other.headers()
    )
    assert answer.status_code == 404
    assert quarantine(client, tenant)["total"] == 1


def test_the_command_line_lists_and_replays_the_quarantine(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    webhook_path: str,
    database_url: str,
    tmp_path: Path,
    clock: VirtualClock,
    failing_intake: list[bool],
) -> None:
    poisoned = poisoned_batch({"from": {"x": 1}})
    post(client, webhook_path, poisoned)
    drain(tidings, clock, passes=MAX_ATTEMPTS + 2)
    env = tidings_env(database_url, tmp_path)
    listed = run_cli(env, "webhooks", "quarantine", "--workspace", tenant.slug, "--raw")
    assert listed.returncode == 0, listed.stderr
    assert "messages[].from" in listed.stdout and "locked by a migration" in listed.stdout
    assert "3 of 3 shown" in listed.stdout and '"wamid.bad"' in listed.stdout

    refused = run_cli(env, "webhooks", "replay", "--workspace", tenant.slug)
    assert refused.returncode != 0 and "--all" in refused.stderr
    failing_intake[0] = False
    replayed = run_cli(env, "webhooks", "replay", "--all", "--workspace", tenant.slug)
    assert replayed.returncode == 0 and "3 update(s)" in replayed.stdout, replayed.stderr
    drain(tidings)
    assert received_wamids(client, tenant) == ["wamid.good1", "wamid.good2"]
    (still,) = quarantine(client, tenant)["items"]  # not understood is not understood
    assert still["key"] == "message:wamid.bad"


def test_the_quarantine_pages_with_the_apis_cursor(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    body = batch("wamid.q1", "wamid.q2", "wamid.q3")
    for message in body["entry"][0]["changes"][0]["value"]["messages"]:
        message["from"] = {"not": "text"}
    post(client, webhook_path, body)
    drain(tidings)
    first = client.get(QUARANTINE, params={"limit": 2}, headers=tenant.headers()).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next_cursor"]
    second = client.get(
        QUARANTINE, params={"limit": 2, "cursor": first["next_cursor"]}, headers=tenant.headers()
    ).json()
    keys = [i["key"] for i in first["items"] + second["items"]]
    assert keys == ["message:wamid.q1", "message:wamid.q2", "message:wamid.q3"]
    assert second["next_cursor"] is None
