"""The sending policy in the pipeline, on a real database: decided when queued, decided again
when the dispatcher claims, deferred messages going out when their time comes, opt-out by
keyword — and every decision readable per contact (O3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_dispatch_rules import a_conversation, dispatcher, message
from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock

API = "/api/v1"


def promotion(name: str) -> dict[str, Any]:
    return {"type": "template", "template": {"name": name, "language": {"code": "zh_TW"}}}


def send(
    client: TestClient, tenant: Tenant, contact_id: int, content: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    answer = client.post(
        f"{API}/messages",
        json={"contact_id": contact_id, "content": content, **extra},
        headers=tenant.headers(),
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def contact_of(client: TestClient, tenant: Tenant, conversation_id: int) -> int:
    conversation = client.get(f"{API}/conversations/{conversation_id}", headers=tenant.headers())
    contact_id: int = conversation.json()["contact_id"]
    return contact_id


def claim(tidings: Tidings, clock: VirtualClock) -> list[int]:
    with tidings.db.transaction() as session:
        jobs = dispatcher(tidings).claim(session, now=clock.now(), limit=50).jobs
    return [job.message_id for job in jobs]


def traces(client: TestClient, tenant: Tenant, contact_id: int) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/contacts/{contact_id}/send-traces", headers=tenant.headers())
    assert answer.status_code == 200
    body: list[dict[str, Any]] = answer.json()
    return body


def test_a_second_promotion_in_a_week_waits_for_the_slot_and_then_goes(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    contact_id = contact_of(client, tenant, a_conversation(client, tidings, tenant, webhook_path))
    first = send(client, tenant, contact_id, promotion("winter_sale"), purpose="marketing")
    assert first["status"] == "queued"
    assert claim(tidings, clock) == [first["id"]]
    clock.advance(timedelta(hours=1))
    second = send(client, tenant, contact_id, promotion("new_arrivals"), purpose="marketing")
    # Monday 23 Nov, 15:00 in Taipei. The contact never opted in, so one template a day
    # (P2); the weekly cap (P4) frees next Monday, and the slot is Wednesday 14:00 Taipei,
    # 2 Dec 06:00 UTC.
    assert second["status"] == "deferred"
    assert second["status_reason"].startswith("P2") and "P4" in second["status_reason"]
    assert second["next_attempt_at"] == "2026-12-02T06:00:00.000Z"
    assert claim(tidings, clock) == []  # not due
    latest = traces(client, tenant, contact_id)[0]
    assert latest["message_id"] == second["id"] and latest["outcome"] == "deferred"
    assert "P4" in latest["reason"] and "2026-12-02T06:00:00" in latest["reason"]
    clock.set(datetime(2026, 12, 2, 6, 0, tzinfo=UTC))
    assert claim(tidings, clock) == [second["id"]]
    assert message(client, tenant, second["id"])["status"] == "sending"


def test_two_promotions_queued_at_once_are_decided_again_when_claimed(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    contact_id = contact_of(client, tenant, a_conversation(client, tidings, tenant, webhook_path))
    ids = [
        send(client, tenant, contact_id, promotion(name), purpose="marketing")["id"]
        for name in ("sale_a", "sale_b")
    ]
    # Both passed when queued (nothing had gone out yet); only one may go this week.
    assert [message(client, tenant, i)["status"] for i in ids] == ["queued", "queued"]
    assert claim(tidings, clock) == ids[:1]
    held = message(client, tenant, ids[1])
    assert held["status"] == "deferred" and "P4" in held["status_reason"]


def test_notifications_of_one_type_are_six_hours_apart_and_other_types_are_not(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    contact_id = contact_of(client, tenant, a_conversation(client, tidings, tenant, webhook_path))
    opted_in = client.put(
        f"{API}/contacts/{contact_id}/consents",
        json={"channel": "whatsapp", "purpose": "transactional", "status": "opted_in"},
        headers=tenant.headers(),
    )
    assert opted_in.status_code == 200  # so P2's one template a day does not apply
    parcel = promotion("parcel_update")

    def notify(kind: str) -> dict[str, Any]:
        return send(client, tenant, contact_id, parcel, purpose="utility", notification_type=kind)

    first = notify("parcel_update")
    assert claim(tidings, clock) == [first["id"]]
    clock.advance(timedelta(hours=2))
    again = notify("parcel_update")
    assert again["status"] == "deferred"
    assert again["next_attempt_at"] == "2026-11-23T12:00:00.000Z"
    assert notify("payment_received")["status"] == "queued"
    bad = client.post(
        f"{API}/messages",
        json={"contact_id": contact_id, "content": parcel, "notification_type": "Parcel Update"},
        headers=tenant.headers(),
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "notification_type"


def test_stop_opts_the_contact_out_at_once_and_confirms_once(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    contact_id = contact_of(client, tenant, conversation_id)
    waiting = send(client, tenant, contact_id, promotion("sale_c"), purpose="marketing")
    stop = batch("wamid.stop")
    inbound = stop["entry"][0]["changes"][0]["value"]["messages"][0]
    inbound["text"]["body"] = " 退訂。"
    inbound["timestamp"] = str(int(clock.now().timestamp()))
    post(client, webhook_path, stop)
    post(client, webhook_path, stop)  # Meta resends: still one opt-out, one confirmation
    tidings.make_worker(sources=tidings.work_sources[:2]).run_once()
    contact = client.get(f"{API}/contacts/{contact_id}", headers=tenant.headers()).json()
    consents = {(c["channel"], c["purpose"]): c["status"] for c in contact["consents"]}
    assert consents[("whatsapp", "marketing")] == "opted_out"
    assert consents[("whatsapp", "transactional")] == "opted_out"
    thread = client.get(
        f"{API}/conversations/{conversation_id}/messages", headers=tenant.headers()
    ).json()["items"]
    confirmations = [m for m in thread if m["origin"] == "system"]
    assert len(confirmations) == 1
    assert confirmations[0]["text"] == "您已取消訂閱，我們不會再透過 WhatsApp 傳送訊息給您。"
    # The promotion queued before the STOP is skipped when claimed; the confirmation goes.
    assert claim(tidings, clock) == [confirmations[0]["id"]]
    skipped = message(client, tenant, waiting["id"])
    assert skipped["status"] == "skipped" and skipped["status_reason"].startswith("P5")
    # And anything asked afterwards is skipped at once, with its reason.
    later = send(client, tenant, contact_id, promotion("sale_d"), purpose="utility")
    assert later["status"] == "skipped" and "opted out" in later["status_reason"]
    reasons = [t["reason"] for t in traces(client, tenant, contact_id)]
    assert sum(r.startswith("P5") for r in reasons) == 2


def test_simplified_chinese_stop_twice_opts_out_and_confirms_only_once(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    """A customer who writes 退订, then 取消订阅 ten minutes later, gets one confirmation —
    not a second one held back by P4 and delivered hours later, at night."""
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    contact_id = contact_of(client, tenant, conversation_id)
    for wamid, word in (("wamid.stop1", "退订"), ("wamid.stop2", "取消订阅")):
        stop = batch(wamid)
        inbound = stop["entry"][0]["changes"][0]["value"]["messages"][0]
        inbound["text"]["body"] = word
        inbound["timestamp"] = str(int(clock.now().timestamp()))
        post(client, webhook_path, stop)
        tidings.make_worker(sources=tidings.work_sources[:2]).run_once()
        clock.advance(timedelta(minutes=10))
    contact = client.get(f"{API}/contacts/{contact_id}", headers=tenant.headers()).json()
    consents = {(c["channel"], c["purpose"]): c["status"] for c in contact["consents"]}
    assert consents[("whatsapp", "marketing")] == "opted_out"
    thread = client.get(
        f"{API}/conversations/{conversation_id}/messages", headers=tenant.headers()
    ).json()["items"]
    assert len([m for m in thread if m["origin"] == "system"]) == 1


def test_a_sentence_with_the_word_stop_is_not_an_opt_out(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    body = batch("wamid.sentence")
    inbound = body["entry"][0]["changes"][0]["value"]["messages"][0]
    inbound["text"]["body"] = "Please don't stop the parcel, I want it"
    inbound["timestamp"] = str(int(clock.now().timestamp()))
    post(client, webhook_path, body)
    tidings.make_worker(sources=tidings.work_sources[:2]).run_once()
    contact_id = contact_of(client, tenant, conversation_id)
    contact = client.get(f"{API}/contacts/{contact_id}", headers=tenant.headers()).json()
    assert contact["consents"] == []
    # The control: the sentence was read and recorded, it just was no keyword.
    thread = client.get(
        f"{API}/conversations/{conversation_id}/messages", headers=tenant.headers()
    ).json()["items"]
    assert "Please don't stop the parcel, I want it" in [m["text"] for m in thread]
    assert [m for m in thread if m["origin"] == "system"] == []


def test_send_traces_of_another_workspaces_contact_are_not_found(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str
) -> None:
    from tests.conftest import make_tenant

    contact_id = contact_of(client, tenant, a_conversation(client, tidings, tenant, webhook_path))
    other = make_tenant(tidings, "other-shop")
    answer = client.get(f"{API}/contacts/{contact_id}/send-traces", headers=other.headers())
    assert answer.status_code == 404


def customers(client: TestClient, tenant: Tenant, count: int) -> list[int]:
    ids = []
    for n in range(count):
        answer = client.post(
            f"{API}/contacts",
            json={"name": f"客戶 {n}", "phone": f"0912 345 {n:03d}"},
            headers=tenant.headers(),
        )
        assert answer.status_code == 201, answer.text
        ids.append(int(answer.json()["id"]))
    return ids


def set_policy(client: TestClient, tenant: Tenant, **figures: Any) -> None:
    answer = client.patch(f"{API}/workspace", json={"policy": figures}, headers=tenant.headers())
    assert answer.status_code == 200, answer.text


def test_a_numbers_daily_quota_defers_the_rest_until_the_day_rolls_on(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    set_policy(client, tenant, daily_quota_per_number=2, warmup_first_day_quota=None)
    ids = [
        send(client, tenant, contact_id, promotion("order_shipped"), purpose="utility")["id"]
        for contact_id in customers(client, tenant, 3)
    ]
    assert claim(tidings, clock) == ids[:2]
    held = message(client, tenant, ids[2])
    assert held["status"] == "deferred" and held["status_reason"].startswith("P6")
    assert held["next_attempt_at"] == "2026-11-24T06:00:00.000Z"
    clock.advance(timedelta(hours=24))
    assert claim(tidings, clock) == ids[2:]


def test_a_new_number_sends_no_more_than_its_warm_up_quota(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    set_policy(client, tenant, warmup_first_day_quota=1, daily_quota_per_number=1000)
    ids = [
        send(client, tenant, contact_id, promotion("order_shipped"), purpose="utility")["id"]
        for contact_id in customers(client, tenant, 2)
    ]
    assert claim(tidings, clock) == ids[:1]
    assert "warming up" in message(client, tenant, ids[1])["status_reason"]


def test_the_messaging_tier_counts_unique_contacts_reached_outside_their_window(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    set_policy(client, tenant, messaging_tier_limit=2, non_opted_in_templates_per_day=5)
    first, second, third = customers(client, tenant, 3)
    ids = [
        send(client, tenant, contact_id, promotion("order_shipped"), purpose="utility")["id"]
        for contact_id in (first, second, third)
    ]
    assert claim(tidings, clock) == ids[:2]
    held = message(client, tenant, ids[2])
    assert held["status"] == "deferred" and "tier" in held["status_reason"]
    # A contact already reached today does not count twice (6 s later: the pair limit).
    clock.advance(timedelta(seconds=6))
    again = send(client, tenant, first, promotion("order_delivered"), purpose="utility")
    assert claim(tidings, clock) == [again["id"]]


def test_start_opts_the_contact_back_in_with_its_source_and_confirms(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    contact_id = contact_of(client, tenant, conversation_id)
    for wamid, words in (("wamid.off", "STOP"), ("wamid.on", "ｓｔａｒｔ")):
        body = batch(wamid)
        inbound = body["entry"][0]["changes"][0]["value"]["messages"][0]
        inbound["text"]["body"] = words
        inbound["timestamp"] = str(int(clock.now().timestamp()))
        post(client, webhook_path, body)
        tidings.make_worker(sources=tidings.work_sources[:2]).run_once()
        clock.advance(timedelta(minutes=1))
    contact = client.get(f"{API}/contacts/{contact_id}", headers=tenant.headers()).json()
    assert {
        (c["channel"], c["purpose"], c["status"], c["source"]) for c in contact["consents"]
    } == {
        ("whatsapp", "marketing", "opted_in", "whatsapp_keyword"),
        ("whatsapp", "transactional", "opted_in", "whatsapp_keyword"),
    }
    thread = client.get(
        f"{API}/conversations/{conversation_id}/messages", headers=tenant.headers()
    ).json()["items"]
    confirmations = sorted(m["text"] for m in thread if m["origin"] == "system")
    assert len(confirmations) == 2 and any("重新訂閱" in t for t in confirmations)
    assert send(client, tenant, contact_id, promotion("sale_e"), purpose="marketing")["status"] in (
        "queued",
        "deferred",
    )
