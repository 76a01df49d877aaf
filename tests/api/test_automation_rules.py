"""Rules, keywords and segments end to end through the WhatsApp webhook (A1-A3): the seed's
"asks about discounts four times → tagged and gets the code, in Thai", "too expensive in two
messages in a row → the instalment plan", traces of every evaluation, the loop guard, and
segments whose members enter and leave with timeline events."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock

API = "/api/v1"
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_wamids = itertools.count(1)


def says(
    tidings: Tidings, words: str, *, wa_id: str = "66812345678", ago: timedelta = timedelta()
) -> dict[str, Any]:
    """A customer's text message as Meta's webhook carries it, sent ``ago`` before now."""
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
                            "contacts": [{"profile": {"name": "สมหญิง ใจดี"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.rules.{next(_wamids)}",
                                    "timestamp": str(int((tidings.clock.now() - ago).timestamp())),
                                    "type": "text",
                                    "text": {"body": words},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def deliver(
    client: TestClient,
    tidings: Tidings,
    path: str,
    words: str,
    *,
    location: Any = None,
    ago: timedelta = timedelta(),
) -> None:
    body = says(tidings, words, ago=ago)
    if location is not None:
        message = body["entry"][0]["changes"][0]["value"]["messages"][0]
        del message["text"]
        message["type"], message["location"] = "location", location
    assert post(client, path, body).status_code == 200
    run(tidings)


def run(tidings: Tidings, passes: int = 3) -> None:
    """Worker passes: the message, then its keyword detections, then the rules they fire.
    The clock moves past the feed's settle delay (on PostgreSQL ids may commit out of order)."""
    worker = tidings.make_worker(sources=tidings.work_sources)
    assert isinstance(tidings.clock, VirtualClock)
    for _ in range(passes):
        worker.run_once()
        tidings.clock.advance(timedelta(seconds=3))


def automation_texts(tidings: Tidings) -> list[str]:
    with tidings.db.reading() as session:
        rows = session.execute(
            text("SELECT content FROM messages WHERE origin = 'automation' ORDER BY id")
        ).all()
    found = []
    for (content,) in rows:
        body = content if isinstance(content, dict) else __import__("json").loads(content)
        found.append(body["text"]["body"])
    return found


def setup_rules(client: TestClient, tenant: Tenant) -> dict[str, int]:
    headers = tenant.headers()
    for name, terms in {
        "discount": ["ส่วนลด", "折扣", "discount", "โปรโมชั่น"],
        "too expensive": ["แพงเกินไป", "แพงไป", "太贵", "too expensive"],
    }.items():
        answer = client.put(f"{API}/keywords/{name}", json={"terms": terms}, headers=headers)
        assert answer.status_code == 200, answer.text
    ids = {}
    price = client.post(
        f"{API}/rules",
        json={
            "name": "Price-sensitive",
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "condition": {"keyword": "discount", "at_least": 4, "within": "30d"},
                "actions": [
                    {"do": "add_tag", "tag": "price-sensitive"},
                    {
                        "do": "reply",
                        "text": "คุณ{{ contact.first_name }} ใช้โค้ด DISCOUNT10 ลด 10% ได้เลยค่ะ",
                    },
                ],
                "guard": {"times": 1, "per": "30d"},
            },
        },
        headers=headers,
    )
    assert price.status_code == 201, price.text
    ids["price"] = price.json()["id"]
    instalment = client.post(
        f"{API}/rules",
        json={
            "name": "Instalment plan",
            "definition": {
                "trigger": {"on": "keyword", "keyword": "too expensive"},
                "condition": {"keyword": "too expensive", "in_a_row": 2},
                "actions": [{"do": "reply", "text": "ผ่อน 0% 10 เดือนได้ค่ะ: {{ workspace.name }}"}],
            },
        },
        headers=headers,
    )
    assert instalment.status_code == 201, instalment.text
    ids["instalment"] = instalment.json()["id"]
    return ids


def contact_of(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    (contact,) = client.get(f"{API}/contacts", headers=tenant.headers()).json()["items"]
    return dict(contact)


def test_a_thai_customer_asking_for_discounts_four_times_is_tagged_and_gets_the_code(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()  # the engines start reading from here
    ids = setup_rules(client, tenant)
    for words in ("มีส่วนลดไหมคะ", "สวัสดีค่ะ", "ส่วนลดสมาชิกเท่าไหร่", "有折扣吗?"):
        deliver(client, tidings, webhook_path, words)
    contact = contact_of(client, tenant)
    assert "price-sensitive" not in contact["tags"]
    runs = client.get(f"{API}/rules/{ids['price']}/runs", headers=tenant.headers()).json()
    assert [r["status"] for r in runs] == ["not_matched"] * 3
    assert "discount" in runs[0]["reason"] and "at_least" in runs[0]["reason"]

    deliver(client, tidings, webhook_path, "ขอโปรโมชั่นหน่อยค่ะ")  # the fourth time
    contact = contact_of(client, tenant)
    assert "price-sensitive" in contact["tags"]
    assert automation_texts(tidings) == ["คุณสมหญิง ใช้โค้ด DISCOUNT10 ลด 10% ได้เลยค่ะ"]
    runs = client.get(f"{API}/rules/{ids['price']}/runs", headers=tenant.headers()).json()
    assert runs[0]["status"] == "fired"
    assert runs[0]["actions_done"]["done"][0] == "0:add_tag"

    deliver(client, tidings, webhook_path, "discount again?")  # the guard: once per 30 days
    runs = client.get(f"{API}/rules/{ids['price']}/runs", headers=tenant.headers()).json()
    assert runs[0]["status"] == "skipped" and "loop guard" in runs[0]["reason"]
    assert len(automation_texts(tidings)) == 1
    why = client.get(f"{API}/contacts/{contact['id']}/rule-runs", headers=tenant.headers()).json()
    assert {r["status"] for r in why} == {"not_matched", "fired", "skipped"}


def test_too_expensive_in_two_messages_in_a_row_sends_the_instalment_plan(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()
    setup_rules(client, tenant)
    deliver(client, tidings, webhook_path, "ราคาแพงเกินไปค่ะ")
    deliver(client, tidings, webhook_path, "ขอคิดดูก่อน")  # breaks the run
    deliver(client, tidings, webhook_path, "太贵了")
    assert automation_texts(tidings) == []
    deliver(client, tidings, webhook_path, "still too expensive for me")
    assert automation_texts(tidings) == ["ผ่อน 0% 10 เดือนได้ค่ะ: Shop taipei-shop"]


def test_rules_that_trigger_each_other_stop_at_the_loop_guard(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()
    headers = tenant.headers()
    for name, (on, add) in {"ping": ("a", "b"), "pong": ("b", "a")}.items():
        answer = client.post(
            f"{API}/rules",
            json={
                "name": name,
                "definition": {
                    "trigger": {"on": "tag_added", "tag": on},
                    "actions": [
                        {"do": "remove_tag", "tag": on},
                        {"do": "add_tag", "tag": add},
                    ],
                    "guard": {"times": 100, "per": "1h"},
                },
            },
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    contact = client.post(f"{API}/contacts", json={"name": "Loop"}, headers=headers).json()
    client.post(f"{API}/contacts/{contact['id']}/tags", json={"tags": ["a"]}, headers=headers)
    run(tidings, passes=10)
    runs = client.get(f"{API}/contacts/{contact['id']}/rule-runs", headers=headers).json()
    assert [r["status"] for r in reversed(runs)] == ["fired", "fired", "fired", "skipped"]
    assert "loop guard" in runs[0]["reason"]


def test_bad_rules_and_conditions_are_refused_naming_the_field(
    client: TestClient, tenant: Tenant
) -> None:
    headers = tenant.headers()

    def refused(body: dict[str, Any], path: str = "rules") -> dict[str, Any]:
        answer = client.post(f"{API}/{path}", json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        return dict(answer.json()["error"])

    trigger = {"on": "message_received"}
    error = refused({"name": "x", "definition": {"trigger": trigger, "actions": [{"do": "fly"}]}})
    assert error["field"] == "definition.actions[0]"
    error = refused(
        {"name": "x", "definition": {"trigger": trigger, "actions": [{"do": "add_tag"}]}}
    )
    assert error["field"] == "definition.actions[0].tag"
    error = refused(
        {
            "name": "x",
            "definition": {
                "trigger": trigger,
                "condition": {"field": "shoe_size", "op": "gt", "value": 40},
                "actions": [{"do": "add_tag", "tag": "t"}],
            },
        }
    )
    assert error["field"] == "definition.condition.field"
    error = refused({"name": "s", "condition": {"in_segment": "nope"}}, "segments")
    assert error["field"] == "condition.in_segment"
    error = refused({"name": "s", "condition": {"read": "welcome"}}, "segments")
    assert error["code"] == "step_condition"
    answer = client.put(f"{API}/keywords/empty", json={"terms": ["  ", "!!"]}, headers=headers)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "terms"


def test_a_rule_or_segment_naming_a_keyword_group_that_does_not_exist_is_refused(
    client: TestClient, tenant: Tenant
) -> None:
    """A rule on the keyword ผ่อน ("instalments") saved without its group would never fire:
    refused naming the field until the group exists; a group in use cannot be deleted."""
    headers = tenant.headers()
    tag = [{"do": "add_tag", "tag": "instalments"}]
    on_keyword = {
        "name": "Instalments",
        "definition": {"trigger": {"on": "keyword", "keyword": "ผ่อน"}, "actions": tag},
    }
    counted = {
        "name": "Asks twice",
        "definition": {
            "trigger": {"on": "message_received"},
            "condition": {"keyword": "ผ่อน", "at_least": 2, "within": "7d"},
            "actions": tag,
        },
    }
    segment = {
        "name": "Instalment askers",
        "condition": {"keyword": "ผ่อน", "at_least": 1, "within": "30d"},
    }
    for path, body, field in (
        ("rules", on_keyword, "definition.trigger.keyword"),
        ("rules", counted, "definition.condition.keyword"),
        ("segments", segment, "condition.keyword"),
    ):
        answer = client.post(f"{API}/{path}", json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("unknown_keyword_group", field)
        assert "ผ่อน" in error["message"]
    assert client.get(f"{API}/rules", headers=headers).json() == []  # nothing half-saved

    terms = {"terms": ["ผ่อน", "ผ่อนได้ไหม", "分期"]}
    assert client.put(f"{API}/keywords/ผ่อน", json=terms, headers=headers).status_code == 200
    for path, body in (("rules", on_keyword), ("rules", counted), ("segments", segment)):
        answer = client.post(f"{API}/{path}", json=body, headers=headers)
        assert answer.status_code == 201, answer.text

    in_use = client.delete(f"{API}/keywords/ผ่อน", headers=headers)
    assert in_use.status_code == 409, in_use.text
    message = in_use.json()["error"]["message"]
    assert "'Instalments'" in message and "'Asks twice'" in message
    assert "'Instalment askers'" in message
    for rule in client.get(f"{API}/rules", headers=headers).json():
        client.delete(f"{API}/rules/{rule['id']}", headers=headers)
    for found in client.get(f"{API}/segments", headers=headers).json():
        client.delete(f"{API}/segments/{found['id']}", headers=headers)
    assert client.delete(f"{API}/keywords/ผ่อน", headers=headers).status_code == 204
    assert client.delete(f"{API}/keywords/ผ่อน", headers=headers).status_code == 404


def test_segment_members_enter_and_leave_with_timeline_events(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    headers = tenant.headers()
    ids = [
        client.post(f"{API}/contacts", json={"name": n, "tags": t}, headers=headers).json()["id"]
        for n, t in (("A", ["vip"]), ("B", []), ("C", ["vip"]))
    ]
    created = client.post(
        f"{API}/segments",
        json={"name": "VIPs", "condition": {"has_tag": "VIP"}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["member_count"] == 2
    members = client.get(f"{API}/segments/{segment['id']}/members", headers=headers).json()
    assert [m["contact_id"] for m in members["items"]] == [ids[0], ids[2]]
    client.delete(f"{API}/contacts/{ids[0]}/tags/vip", headers=headers)
    client.post(f"{API}/contacts/{ids[1]}/tags", json={"tags": ["VIP"]}, headers=headers)
    refreshed = client.post(f"{API}/segments/{segment['id']}/refresh", headers=headers).json()
    assert refreshed == {"entered": 1, "left": 1, "member_count": 2}
    events = client.get(
        f"{API}/contacts/{ids[0]}/events", params={"type": "segment.left"}, headers=headers
    ).json()["items"]
    assert events[0]["properties"]["segment"] == "VIPs"
    counted = client.post(
        f"{API}/segments/count",
        json={"condition": {"not": {"in_segment": "VIPs"}}},
        headers=headers,
    ).json()
    assert counted == {"contacts": 1}


def test_order_and_store_questions_are_answered_from_the_timeline_and_the_stores(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()
    headers = tenant.headers()
    for name, trigger, action in (
        ("Parcel", {"on": "intent", "intent": "order_status"}, "answer_order_status"),
        ("Stores", {"on": "intent", "intent": "store_location"}, "answer_nearest_store"),
        (
            "Shared location",
            {"on": "event", "event": "message.received", "where": {"type": "location"}},
            "answer_nearest_store",
        ),
    ):
        answer = client.post(
            f"{API}/rules",
            json={"name": name, "definition": {"trigger": trigger, "actions": [{"do": action}]}},
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    for store in (
        {
            "name": "Siam",
            "address": "Rama I Rd",
            "latitude": 13.7463,
            "longitude": 100.5347,
            "hours": dict.fromkeys(EVERY_DAY, "10:00-21:00"),
        },
        {
            "name": "Nimman",
            "address": "Nimmanhaemin Rd",
            "latitude": 18.7999,
            "longitude": 98.9677,
            "hours": {"sat": "10:00-20:00"},
        },
    ):
        assert client.post(f"{API}/stores", json=store, headers=headers).status_code == 201

    deliver(client, tidings, webhook_path, "สวัสดีค่ะ")
    contact = contact_of(client, tenant)
    shipped = client.post(
        f"{API}/contacts/{contact['id']}/events",
        json={
            "type": "order.shipped",
            "properties": {
                "order_id": "TH-1001",
                "carrier": "Kerry",
                "tracking_url": "https://track.example/1",
            },
        },
        headers=headers,
    )
    assert shipped.status_code == 201, shipped.text
    deliver(client, tidings, webhook_path, "พัสดุอยู่ไหนคะ")
    assert automation_texts(tidings)[-1] == (
        "คำสั่งซื้อ TH-1001 ของคุณจัดส่งแล้ว กำลังเดินทางค่ะ ขนส่ง: Kerry ติดตามพัสดุได้ที่ https://track.example/1"
    )
    # A carrier with no tracking link: the answer gives the number to look it up with.
    client.post(
        f"{API}/contacts/{contact['id']}/events",
        json={
            "type": "order.shipped",
            "properties": {"order_id": "TH-1002", "carrier": "Flash", "tracking_number": "TH0123"},
        },
        headers=headers,
    )
    deliver(client, tidings, webhook_path, "พัสดุอยู่ไหนคะ")
    assert automation_texts(tidings)[-1].endswith("ขนส่ง: Flash เลขพัสดุ: TH0123")
    # A question from a backlog (the server was down for hours) gets no automatic answer.
    answered = len(automation_texts(tidings))
    deliver(client, tidings, webhook_path, "พัสดุถึงไหนแล้วคะ", ago=timedelta(hours=3))
    assert len(automation_texts(tidings)) == answered
    deliver(client, tidings, webhook_path, "ร้านอยู่ที่ไหนคะ")
    assert "ส่งตำแหน่งของคุณมา" in automation_texts(tidings)[-1]
    deliver(
        client,
        tidings,
        webhook_path,
        "",
        location={"latitude": 13.7563, "longitude": 100.5018, "name": "Home"},
    )
    assert automation_texts(tidings)[-1].startswith("สาขาที่ใกล้ที่สุดคือ Siam Rama I Rd")
    events = client.get(
        f"{API}/contacts/{contact['id']}/events",
        params={"type": "intent.detected"},
        headers=headers,
    ).json()["items"]
    assert {e["properties"]["intent"] for e in events} == {"order_status", "store_location"}
    bad = client.post(
        f"{API}/stores",
        json={"name": "X", "address": "Y", "latitude": 91, "longitude": 0},
        headers=headers,
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "latitude"


def test_a_reply_speaks_of_the_last_purchase_in_the_contacts_language(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()
    headers = tenant.headers()
    rule = client.post(
        f"{API}/rules",
        json={
            "name": "Welcome back",
            "definition": {
                "trigger": {"on": "message_received"},
                "actions": [
                    {
                        "do": "reply",
                        "text": "คุณ{{ contact.first_name | fallback('ลูกค้า') }} "
                        "ซื้อล่าสุด {{ contact.last_purchase_ago | fallback('ยังไม่เคยซื้อ') }}"
                        "{{ contact.fields.missing }}",
                    }
                ],
                "guard": {"times": 10, "per": "1h"},
            },
        },
        headers=headers,
    )
    assert rule.status_code == 201, rule.text
    deliver(client, tidings, webhook_path, "สวัสดีค่ะ")
    assert automation_texts(tidings) == ["คุณสมหญิง ซื้อล่าสุด ยังไม่เคยซื้อ"]
    contact = contact_of(client, tenant)
    client.patch(f"{API}/contacts/{contact['id']}", json={"locale": "th-TH"}, headers=headers)
    placed = client.post(
        f"{API}/contacts/{contact['id']}/events",
        json={
            "type": "order.placed",
            "occurred_at": (tidings.clock.now() - timedelta(days=3)).isoformat(),
        },
        headers=headers,
    )
    assert placed.status_code == 201, placed.text
    deliver(client, tidings, webhook_path, "มีของใหม่ไหมคะ")
    assert automation_texts(tidings)[-1] == "คุณสมหญิง ซื้อล่าสุด 3 วันที่ผ่านมา"


def test_a_new_workspace_gets_the_seed_defaults_once(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    from tidings.automation.defaults import install_defaults
    from tidings.workspaces import service as workspaces

    headers = tenant.headers()
    for _ in range(2):  # running it again adds nothing
        with tidings.db.transaction() as session:
            workspace = workspaces.get_workspace(session, tenant.workspace_id)
            assert workspace is not None
            install_defaults(session, workspace, now=tidings.clock.now())
    segments = client.get(f"{API}/segments", headers=headers).json()
    assert sorted(s["name"] for s in segments) == ["High intent", "Lost", "Potential"]
    rules = {r["name"]: r for r in client.get(f"{API}/rules", headers=headers).json()}
    assert len(rules) == 10
    assert rules["Where is my parcel"]["enabled"] and not rules["Price-sensitive"]["enabled"]
    # The workspace speaks Traditional Chinese (zh-Hant-TW): so do its offers.
    code = rules["Price-sensitive"]["definition"]["actions"][1]["text"]
    assert "優惠碼" in code
    keywords = client.get(f"{API}/keywords", headers=headers).json()
    assert {k["name"] for k in keywords} == {"discount", "too expensive"}


def test_a_regular_who_goes_quiet_and_sour_is_flagged_and_gets_the_rescue_offer(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    tidings.make_worker().run_once()
    headers = tenant.headers()
    rescue = client.post(
        f"{API}/rules",
        json={
            "name": "Rescue",
            "definition": {
                "trigger": {"on": "event", "event": "churn.risk_raised"},
                "condition": {"field": "churn_risk", "op": "eq", "value": True},
                "actions": [{"do": "reply", "text": "ขอโทษจริงๆ ค่ะ รับส่วนลด 20% โค้ด SORRY20"}],
            },
        },
        headers=headers,
    )
    assert rescue.status_code == 201, rescue.text
    for day in (8, 9, 10, 15, 16, 17, 22, 23, 24):  # three a week for three weeks
        deliver(client, tidings, webhook_path, "สวัสดีค่ะ", ago=timedelta(days=day))
    contact = contact_of(client, tenant)
    assert not contact["churn_risk"] and contact["activity_score"] > 0
    deliver(client, tidings, webhook_path, "แย่มาก ผิดหวังสุดๆ")
    contact = contact_of(client, tenant)
    assert contact["churn_risk"] and contact["sentiment"] < 0.3
    assert automation_texts(tidings) == ["ขอโทษจริงๆ ค่ะ รับส่วนลด 20% โค้ด SORRY20"]
    deliver(client, tidings, webhook_path, "ขอบคุณมากค่ะ ประทับใจ")  # feeling better
    assert not contact_of(client, tenant)["churn_risk"]


def test_a_scheduled_rule_runs_for_its_audience_when_its_time_comes(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    from tidings.automation.engine import run_scheduled_rules

    headers = tenant.headers()
    ids = [
        client.post(f"{API}/contacts", json={"name": n, "tags": t}, headers=headers).json()["id"]
        for n, t in (("A", ["vip"]), ("B", []), ("C", ["vip"]))
    ]
    rule = client.post(
        f"{API}/rules",
        json={
            "name": "Daily VIP points",
            "definition": {
                "trigger": {"on": "schedule", "every": "1d", "at": "09:00"},
                "condition": {"has_tag": "vip"},
                "actions": [{"do": "add_score", "by": 10}],
            },
        },
        headers=headers,
    )
    assert rule.status_code == 201, rule.text

    def run() -> int:
        with tidings.db.transaction() as session:
            return run_scheduled_rules(session, now=tidings.clock.now())

    assert run() == 0  # not yet nine o'clock (the workspace is in Asia/Taipei)
    assert isinstance(tidings.clock, VirtualClock)
    tidings.clock.advance(timedelta(days=1))
    assert run() == 2
    assert run() == 0  # once per slot
    scores = {c: client.get(f"{API}/contacts/{c}", headers=headers).json()["score"] for c in ids}
    assert scores == {ids[0]: 10, ids[1]: 0, ids[2]: 10}
    runs = client.get(f"{API}/rules/{rule.json()['id']}/runs", headers=headers).json()
    assert [r["status"] for r in runs] == ["fired", "fired"]
    assert runs[0]["reason"] == "schedule"


def test_one_events_failure_neither_stops_the_engine_nor_leaves_half_its_work(
    client: TestClient, tidings: Tidings, tenant: Tenant, monkeypatch: Any
) -> None:
    from tidings.automation import engine

    tidings.make_worker().run_once()
    headers = tenant.headers()
    client.post(
        f"{API}/rules",
        json={
            "name": "Tag everyone who writes",
            "definition": {
                "trigger": {"on": "event", "event": "visit"},
                "actions": [{"do": "add_tag", "tag": "visitor"}],
            },
        },
        headers=headers,
    )
    ids = [
        client.post(f"{API}/contacts", json={"name": n}, headers=headers).json()["id"]
        for n in ("Broken", "Fine")
    ]
    for contact_id in ids:
        client.post(f"{API}/contacts/{contact_id}/events", json={"type": "visit"}, headers=headers)
    real = engine._react_to

    def failing(session: Any, known: Any, event: Any, *rest: Any) -> None:
        real(session, known, event, *rest)
        if event.contact_id == ids[0]:
            raise RuntimeError("bad data")

    monkeypatch.setattr(engine, "_react_to", failing)
    run(tidings, passes=2)
    tags = {c: client.get(f"{API}/contacts/{c}", headers=headers).json()["tags"] for c in ids}
    assert tags == {ids[0]: [], ids[1]: ["visitor"]}  # the failed event's tag was undone
    runs = client.get(f"{API}/contacts/{ids[0]}/rule-runs", headers=headers).json()
    assert runs == []


def test_two_rules_never_make_one_contact_the_same_offer_twice_within_its_cap(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """ "Price-sensitive" and "High intent" both hand out WELCOME10: a customer who sets off
    both gets the code once; another offer still goes."""
    tidings.make_worker().run_once()
    terms = {"terms": ["ส่วนลด", "discount"]}
    assert client.put(f"{API}/keywords/discount", json=terms, headers=tenant.headers()).is_success
    for name, text_ in (("Discount asked", "Code WELCOME10"), ("Also discount", "Again WELCOME10")):
        answer = client.post(
            f"{API}/rules",
            json={
                "name": name,
                "enabled": True,
                "definition": {
                    "trigger": {"on": "keyword", "keyword": "discount"},
                    "actions": [{"do": "reply", "text": text_, "offer": "WELCOME10"}],
                },
            },
            headers=tenant.headers(),
        )
        assert answer.status_code == 201, answer.text
    client.post(
        f"{API}/rules",
        json={
            "name": "Other offer",
            "enabled": True,
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "actions": [{"do": "reply", "text": "Free shipping: SHIP0", "offer": "SHIP0"}],
            },
        },
        headers=tenant.headers(),
    )
    deliver(client, tidings, webhook_path, "มีส่วนลดไหมคะ")
    deliver(client, tidings, webhook_path, "ส่วนลดอีกไหมคะ")
    sent = automation_texts(tidings)
    assert sum("WELCOME10" in t for t in sent) == 1, sent
    assert sum("SHIP0" in t for t in sent) == 1, sent
    bad = client.post(
        f"{API}/rules",
        json={
            "name": "Bad offer",
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "actions": [{"do": "reply", "text": "x", "offer": "has spaces"}],
            },
        },
        headers=tenant.headers(),
    )
    assert bad.status_code == 422 and "offer" in bad.json()["error"]["field"]


def test_the_shipped_replies_answer_each_customer_in_their_own_language(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    """The workspace speaks Traditional Chinese; a Thai customer who trips the shipped
    instalment rule is answered in Thai, a Simplified Chinese one in Simplified Chinese, and a
    rule's own translations pick by base language too (``zh`` for both scripts)."""
    from tidings.automation.defaults import TEXTS, install_defaults
    from tidings.workspaces import service as workspaces

    tidings.make_worker().run_once()
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        install_defaults(session, workspace, now=tidings.clock.now())
    headers = tenant.headers()
    rules = {r["name"]: r for r in client.get(f"{API}/rules", headers=headers).json()}
    instalment = rules["Instalment plan"]
    switched_on = client.patch(
        f"{API}/rules/{instalment['id']}", json={"enabled": True}, headers=headers
    )
    assert switched_on.status_code == 200, switched_on.text

    deliver(client, tidings, webhook_path, "แพงเกินไปค่ะ")
    deliver(client, tidings, webhook_path, "แพงไปหน่อย")
    assert automation_texts(tidings) == [TEXTS["instalment"]["th"]]

    for words in ("太贵了", "还是太贵"):
        body = says(tidings, words, wa_id="8613800138000")
        assert post(client, webhook_path, body).status_code == 200
        run(tidings)
    assert automation_texts(tidings)[-1] == TEXTS["instalment"]["zh-Hans"]

    refused = client.post(
        f"{API}/rules",
        json={
            "name": "Translations without a text",
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "actions": [{"do": "reply", "quick_reply": "hi", "translations": {"th": "x"}}],
            },
        },
        headers=headers,
    )
    assert refused.status_code == 422 and "translations" in refused.text
    bad_tag = client.post(
        f"{API}/rules",
        json={
            "name": "Bad tag",
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "actions": [{"do": "reply", "text": "x", "translations": {"not a tag!": "y"}}],
            },
        },
        headers=headers,
    )
    assert bad_tag.status_code == 422, bad_tag.text
