"""The inbox through the API (I1–I4): conversations per contact and number, filters, threads,
assignment to agents and teams, statuses, notes, labels and quick replies with variables."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.workspaces.domain import Role

API = "/api/v1"
WAMIDS = itertools.count()


def customer_writes(
    client: TestClient, tidings: Tidings, path: str, wa_id: str, name: str, text: str
) -> None:
    body = batch(f"wamid.{wa_id}.{next(WAMIDS)}")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
    message = value["messages"][0]
    message |= {
        "from": wa_id,
        "timestamp": str(int(tidings.clock.now().timestamp())),
        "text": {"body": text},
    }
    post(client, path, body)
    tidings.make_worker(sources=tidings.work_sources).run_once()


def inbox(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/conversations", params=params, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_each_customer_gets_one_conversation_listed_by_latest_activity(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย ใจดี", "สวัสดี")
    clock.advance(timedelta(minutes=1))
    customer_writes(client, tidings, webhook_path, "886912345678", "林怡君", "你好")
    clock.advance(timedelta(minutes=1))
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย ใจดี", "ส่งฟรีไหม")
    first, second = inbox(client, tenant)
    assert (first["unread_count"], second["unread_count"]) == (2, 1)
    assert first["window_open"] and first["status"] == "open"
    page = client.get(f"{API}/conversations", params={"limit": 1}, headers=tenant.headers()).json()
    rest = client.get(
        f"{API}/conversations",
        params={"limit": 1, "cursor": page["next_cursor"]},
        headers=tenant.headers(),
    ).json()
    assert [page["items"][0]["id"], rest["items"][0]["id"]] == [first["id"], second["id"]]
    thread = client.get(
        f"{API}/conversations/{first['id']}/messages", headers=tenant.headers()
    ).json()["items"]
    assert [m["text"] for m in thread] == ["ส่งฟรีไหม", "สวัสดี"]  # newest first
    assert all(m["direction"] == "in" and m["status"] == "received" for m in thread)
    bad = client.get(f"{API}/conversations", params={"cursor": "nope"}, headers=tenant.headers())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"
    bad = client.get(f"{API}/conversations", params={"status": "gone"}, headers=tenant.headers())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"


def test_assignment_to_agents_and_teams_with_filters(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย", "สวัสดี")
    customer_writes(client, tidings, webhook_path, "886912345678", "林怡君", "你好")
    first, second = inbox(client, tenant)
    agent = client.post(
        f"{API}/agents",
        json={
            "email": "nok@shop.example",
            "name": "Nok",
            "role": "agent",
            "password": "lotus pond 88",
        },
        headers=tenant.headers(),
    ).json()
    team = client.post(f"{API}/teams", json={"name": "Bangkok"}, headers=tenant.headers()).json()
    added = client.put(f"{API}/teams/{team['id']}/members/{agent['id']}", headers=tenant.headers())
    assert added.json()["member_ids"] == [agent["id"]]
    assigned = client.post(
        f"{API}/conversations/{first['id']}/assign",
        json={"assignee_id": agent["id"], "team_id": team["id"]},
        headers=tenant.headers(Role.AGENT),
    ).json()
    assert (assigned["assignee_id"], assigned["team_id"]) == (agent["id"], team["id"])
    assert [c["id"] for c in inbox(client, tenant, assignee_id=agent["id"])] == [first["id"]]
    assert [c["id"] for c in inbox(client, tenant, team_id=team["id"])] == [first["id"]]
    assert [c["id"] for c in inbox(client, tenant, unassigned=True)] == [second["id"]]
    cleared = client.post(
        f"{API}/conversations/{first['id']}/assign",
        json={"assignee_id": None},
        headers=tenant.headers(),
    ).json()
    assert (cleared["assignee_id"], cleared["team_id"]) == (None, team["id"])
    stranger = make_tenant(tidings, "other-shop")
    wrong = client.post(
        f"{API}/conversations/{first['id']}/assign",
        json={"assignee_id": stranger.owner_id},
        headers=tenant.headers(),
    )
    assert wrong.status_code == 404
    taken = client.post(f"{API}/teams", json={"name": "Bangkok"}, headers=tenant.headers())
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "name"


def test_resolve_snooze_and_reopen_on_the_next_message(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย", "สวัสดี")
    (conversation,) = inbox(client, tenant)
    url = f"{API}/conversations/{conversation['id']}"
    resolved = client.post(f"{url}/resolve", headers=tenant.headers()).json()
    assert resolved["status"] == "resolved" and resolved["unread_count"] == 0
    assert inbox(client, tenant, status="open") == []
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย", "ยังอยู่ไหม")
    assert inbox(client, tenant, status="open")[0]["id"] == conversation["id"]
    past = client.post(
        f"{url}/snooze", json={"until": "2026-11-22T00:00:00Z"}, headers=tenant.headers()
    )
    assert past.status_code == 422 and past.json()["error"]["field"] == "snoozed_until"
    snoozed = client.post(
        f"{url}/snooze", json={"until": "2026-11-23T08:00:00Z"}, headers=tenant.headers()
    ).json()
    assert snoozed["status"] == "snoozed"
    clock.advance(timedelta(hours=2, minutes=1))
    tidings.make_worker(sources=[]).run_once()  # the periodic wake-up
    assert client.get(url, headers=tenant.headers()).json()["status"] == "open"
    pending = client.post(f"{url}/status", json={"status": "pending"}, headers=tenant.headers())
    assert pending.json()["status"] == "pending"
    reopened = client.post(f"{url}/reopen", headers=tenant.headers()).json()
    assert reopened["status"] == "open"


def test_notes_and_labels_stay_inside_the_team(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย", "สวัสดี")
    (conversation,) = inbox(client, tenant)
    url = f"{API}/conversations/{conversation['id']}"
    note = client.post(f"{url}/notes", json={"body": "Wants COD"}, headers=tenant.headers())
    assert note.status_code == 201 and note.json()["author_label"] == "owner key"
    blank = client.post(f"{url}/notes", json={"body": "  "}, headers=tenant.headers())
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "body"
    labelled = client.post(
        f"{url}/labels", json={"labels": ["VIP", "ลูกค้าใหม่"]}, headers=tenant.headers()
    ).json()
    assert labelled["labels"] == ["vip", "ลูกค้าใหม่"]
    assert [c["id"] for c in inbox(client, tenant, label="vip")] == [conversation["id"]]
    removed = client.delete(f"{url}/labels/vip", headers=tenant.headers()).json()
    assert removed["labels"] == ["ลูกค้าใหม่"]
    assert client.delete(f"{url}/labels/vip", headers=tenant.headers()).status_code == 404
    thread = client.get(f"{url}/messages", headers=tenant.headers()).json()["items"]
    assert all("COD" not in (m["text"] or "") for m in thread)  # notes are never messages
    stranger = make_tenant(tidings, "other-shop")
    assert client.get(url, headers=stranger.headers()).status_code == 404
    assert client.get(f"{url}/notes", headers=stranger.headers()).status_code == 404
    message_id = thread[0]["id"]
    assert client.get(f"{API}/messages/{message_id}", headers=stranger.headers()).status_code == 404


def test_quick_replies_fill_in_the_contact_and_go_out_as_text(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย ใจดี", "ค่าส่งเท่าไหร่")
    (conversation,) = inbox(client, tenant)
    body = {
        "shortcut": "/Ship",
        "title": "Shipping cost",
        "body": "สวัสดีค่ะคุณ{{ contact.first_name }} ส่งฟรีเมื่อซื้อครบ 1,000 บาท — {{ agent.name }}",
    }
    forbidden = client.post(f"{API}/quick-replies", json=body, headers=tenant.headers(Role.AGENT))
    assert forbidden.status_code == 403
    created = client.post(f"{API}/quick-replies", json=body, headers=tenant.headers())
    assert created.status_code == 201 and created.json()["shortcut"] == "ship"
    clash = client.post(f"{API}/quick-replies", json=body, headers=tenant.headers())
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "shortcut"
    broken = client.post(
        f"{API}/quick-replies",
        json={"shortcut": "oops", "body": "Hi\n{{ contact.name "},
        headers=tenant.headers(),
    )
    assert broken.status_code == 422
    assert (
        broken.json()["error"]["field"] == "body" and "line 2" in broken.json()["error"]["message"]
    )
    preview = client.get(
        f"{API}/conversations/{conversation['id']}/quick-replies/ship", headers=tenant.headers()
    ).json()
    assert preview["text"] == "สวัสดีค่ะคุณสมชาย ส่งฟรีเมื่อซื้อครบ 1,000 บาท — owner key"
    sent = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"quick_reply": "ship"},
        headers=tenant.headers(Role.AGENT),
    )
    assert sent.status_code == 202 and sent.json()["text"].startswith("สวัสดีค่ะคุณสมชาย")
    assert sent.json()["origin"] == "agent" and sent.json()["status"] == "queued"
    both = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"text": "a", "quick_reply": "ship"},
        headers=tenant.headers(),
    )
    assert both.status_code == 422
    unknown = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"quick_reply": "nope"},
        headers=tenant.headers(),
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "shortcut"
    bad = client.post(
        f"{API}/conversations/{conversation['id']}/messages",
        json={"content": {"type": "image", "image": {"link": "ftp://x"}}},
        headers=tenant.headers(),
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "content.image.link"
    renamed = client.patch(
        f"{API}/quick-replies/{created.json()['id']}",
        json={"title": "Shipping"},
        headers=tenant.headers(),
    ).json()
    assert (renamed["title"], renamed["shortcut"]) == ("Shipping", "ship")
    gone = client.delete(f"{API}/quick-replies/{created.json()['id']}", headers=tenant.headers())
    assert gone.status_code == 204
    assert client.get(f"{API}/quick-replies", headers=tenant.headers()).json() == []


def test_an_agents_reply_takes_an_unassigned_conversation_and_never_another_agents(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """Two agents in the inbox: the first to answer a customer nobody is assigned to takes the
    conversation (the workspace may turn that off); an integration's API key takes nothing."""
    from tidings.api.app import create_app

    headers = tenant.headers()
    customer_writes(client, tidings, webhook_path, "66812345678", "สมชาย", "สวัสดี")
    customer_writes(client, tidings, webhook_path, "886912345678", "林怡君", "你好")
    customer_writes(client, tidings, webhook_path, "85291234567", "陳大文", "你好")
    by_name = {c["contact_name"]: c["id"] for c in inbox(client, tenant)}
    agents = {}
    for email, name in (("mei@teahouse.example", "Mei"), ("ploy@teahouse.example", "Ploy")):
        created = client.post(
            f"{API}/agents",
            json={"email": email, "name": name, "role": "agent", "password": "a long password!"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        agents[name] = created.json()["id"]

    def signed_in(email: str) -> tuple[TestClient, dict[str, str]]:
        browser = TestClient(create_app(tidings))
        answer = browser.post(
            "/app/login",
            data={"workspace": tenant.slug, "email": email, "password": "a long password!"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        page = browser.get("/app/inbox").text
        token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        return browser, {"X-CSRF-Token": token}

    def reply(who: tuple[TestClient, dict[str, str]], conversation_id: int, text: str) -> None:
        browser, csrf = who
        answer = browser.post(
            f"{API}/conversations/{conversation_id}/messages", json={"text": text}, headers=csrf
        )
        assert answer.status_code == 202, answer.text

    def assignee(conversation_id: int) -> int | None:
        found = client.get(f"{API}/conversations/{conversation_id}", headers=headers).json()
        return found["assignee_id"]  # type: ignore[no-any-return]

    mei, ploy = signed_in("mei@teahouse.example"), signed_in("ploy@teahouse.example")
    reply(mei, by_name["สมชาย"], "สวัสดีค่ะ")
    assert assignee(by_name["สมชาย"]) == agents["Mei"]
    reply(ploy, by_name["สมชาย"], "ยินดีค่ะ")  # a second agent chips in: Mei keeps it
    assert assignee(by_name["สมชาย"]) == agents["Mei"]
    answer = client.post(
        f"{API}/conversations/{by_name['林怡君']}/messages", json={"text": "您好"}, headers=headers
    )
    assert answer.status_code == 202 and assignee(by_name["林怡君"]) is None  # an API key
    turned_off = client.patch(
        f"{API}/workspace", json={"policy": {"reply_assigns_agent": False}}, headers=headers
    )
    assert turned_off.status_code == 200, turned_off.text
    reply(ploy, by_name["陳大文"], "您好")
    assert assignee(by_name["陳大文"]) is None
    for browser, _ in (mei, ploy):
        browser.close()
