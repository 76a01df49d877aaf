"""Broadcasts through the API and the worker (P8): checked input with field-named errors, the
load estimate and batch mode (P6), planning with the sending policy (P1–P7), personalisation
with fallbacks, local-time schedules, resuming without doubles, cancelling, statistics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_dispatch_rules import send_and_report
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.broadcasts.jobs import BroadcastPlanner
from tidings.kernel.clock import VirtualClock
from tidings.workspaces.domain import Role

API = "/api/v1"
TEMPLATE = {
    "name": "winter_sale",
    "language": {"code": "zh_TW"},
    "components": [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "field": "first_name", "fallback": "朋友"},
                {"type": "text", "text": "9折"},
            ],
        }
    ],
}


def contact(client: TestClient, tenant: Tenant, **body: Any) -> int:
    answer = client.post(f"{API}/contacts", json=body, headers=tenant.headers())
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def broadcast(client: TestClient, tenant: Tenant, **body: Any) -> Any:
    payload = {"name": "Winter sale", "template": TEMPLATE, **body}
    return client.post(f"{API}/broadcasts", json=payload, headers=tenant.headers())


def plan(tidings: Tidings, *, chunk: int = 2000) -> None:
    planner = BroadcastPlanner(chunk=chunk)
    while True:
        with tidings.db.transaction() as session:
            if planner.run_batch(session, now=tidings.clock.now(), limit=500) == 0:
                return


def outgoing(tidings: Tidings, broadcast_id: int) -> dict[int, dict[str, Any]]:
    with tidings.db.reading() as session:
        rows = session.execute(
            text(
                "SELECT contact_id, status, status_reason, next_attempt_at, content "
                "FROM messages WHERE broadcast_id = :b"
            ),
            {"b": broadcast_id},
        ).mappings()
        found = {row["contact_id"]: dict(row) for row in rows}
    for row in found.values():  # JSON comes back as text from SQLite, parsed from PostgreSQL
        if isinstance(row["content"], str):
            row["content"] = json.loads(row["content"])
    return found


@pytest.fixture
def number(client: TestClient, tenant: Tenant, webhook_path: str) -> str:
    return webhook_path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"template": {"name": "Bad Name", "language": {"code": "zh_TW"}}}, "template.name"),
        ({"template": {"name": "ok", "language": {"code": "??"}}}, "template.language.code"),
        ({"audience": {"colour": "red"}}, "audience.colour"),
        ({"audience": {"list_id": 999}}, "audience.list_id"),
        ({"audience": {"fields": {"nope": "x"}}}, "audience.fields.nope"),
        ({"purpose": "authentication"}, "purpose"),
        ({"send_at": "2026-11-01T00:00:00Z"}, "send_at"),
        ({"send_at": "2026-12-01T10:00:00"}, "send_at"),
        (
            {"send_at": "2026-12-01T10:00:00Z", "local_date": "2026-12-01", "local_time": "10:00"},
            "send_at",
        ),
        (
            {
                "template": {
                    "name": "ok",
                    "language": {"code": "th"},
                    "components": [{"type": "body", "parameters": [{"field": "shoe_size"}]}],
                }
            },
            "template.components[0].parameters[0].field",
        ),
        (
            {
                "template": {
                    "name": "ok",
                    "language": {"code": "th"},
                    "components": [{"type": "body", "parameters": [{"field": "first_name"}]}],
                }
            },
            "template.components[0].parameters[0].fallback",
        ),
    ],
)
def test_bad_broadcasts_are_refused_naming_the_field(
    client: TestClient, tenant: Tenant, number: str, change: dict[str, Any], field: str
) -> None:
    answer = broadcast(client, tenant, **change)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert client.get(f"{API}/broadcasts", headers=tenant.headers()).json() == []


def test_agents_may_not_send_broadcasts(client: TestClient, tenant: Tenant, number: str) -> None:
    answer = client.post(
        f"{API}/broadcasts",
        json={"name": "x", "template": TEMPLATE},
        headers=tenant.headers(Role.AGENT),
    )
    assert answer.status_code == 403


def test_the_estimate_spreads_a_large_send_into_daily_batches(
    client: TestClient, tenant: Tenant, number: str
) -> None:
    for n in range(5):
        contact(client, tenant, name=f"客戶{n}", phone=f"0912 000 00{n}", tags=["vip"])
    small = broadcast(client, tenant, dry_run=True, audience={"tags": ["VIP"]}).json()
    assert small["broadcast"] is None
    assert small["estimate"]["recipients"] == 5 and small["estimate"]["batches"] == 1
    client.patch(
        f"{API}/workspace",
        json={"policy": {"daily_quota_per_number": 4, "warmup_first_day_quota": None}},
        headers=tenant.headers(),
    )
    large = broadcast(client, tenant, dry_run=True).json()["estimate"]
    # 5 recipients × 3 interactions = 15 > 80% of 4: one recipient a day, five days.
    assert (large["batches"], large["batch_size"], large["batch_every_seconds"]) == (5, 1, 86400)
    assert large["reason"].startswith("P6")
    assert client.get(f"{API}/broadcasts", headers=tenant.headers()).json() == []


def test_planning_applies_every_rule_personalises_and_resumes_without_doubles(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str
) -> None:
    lin = contact(client, tenant, name="林怡君", first_name="怡君", phone="0912 345 678")
    nameless = contact(client, tenant, phone="0912 345 679")
    opted_out = contact(
        client,
        tenant,
        name="Somchai",
        phone="0912 345 680",
        consents=[{"channel": "whatsapp", "purpose": "marketing", "status": "opted_out"}],
    )
    flagged = contact(client, tenant, name="Do Not", phone="0912 345 681", do_not_contact=True)
    no_phone = contact(client, tenant, name="Mail Only", email="only@example.com")
    created = broadcast(client, tenant).json()
    assert created["broadcast"]["status"] == "scheduled"
    assert created["estimate"]["recipients"] == 5
    broadcast_id = created["broadcast"]["id"]
    plan(tidings, chunk=2)  # three chunks, as after two crashes
    rows = outgoing(tidings, broadcast_id)
    assert {c: r["status"] for c, r in rows.items()} == {
        lin: "queued",
        nameless: "queued",
        opted_out: "skipped",
        flagged: "skipped",
        no_phone: "skipped",
    }
    assert rows[opted_out]["status_reason"].startswith("P5")
    assert rows[flagged]["status_reason"] == "P5: the contact is marked do-not-contact"
    assert "no WhatsApp" in rows[no_phone]["status_reason"]
    first_parameter = [
        r["content"]["template"]["components"][0]["parameters"][0]["text"]
        for r in (rows[lin], rows[nameless])
    ]
    assert first_parameter == ["怡君", "朋友"]  # the fallback, never a raw placeholder
    # Planning again from the start (a crash before the cursor was saved) adds nothing.
    with tidings.db.transaction() as session:
        session.execute(text("UPDATE broadcasts SET planned_through = 0, status = 'planning'"))
    plan(tidings)
    assert len(outgoing(tidings, broadcast_id)) == 5
    with tidings.db.reading() as session:
        traced = session.execute(
            text(
                "SELECT count(*) FROM send_traces t JOIN messages m ON m.id = t.message_id "
                "WHERE m.broadcast_id = :b"
            ),
            {"b": broadcast_id},
        ).scalar()
    assert traced == 5  # one decision each, not one per planning
    read = client.get(f"{API}/broadcasts/{broadcast_id}", headers=tenant.headers()).json()
    assert read["status"] == "sending" and read["recipients"] == 5
    stats = client.get(
        f"{API}/broadcasts/{broadcast_id}/statistics", headers=tenant.headers()
    ).json()
    assert stats["outcomes"] == {"queued": 2, "skipped": 3}
    assert sum(stats["reasons"]["skipped"].values()) == 3


def test_local_time_schedules_each_contact_in_their_own_zone_and_batches_are_a_day_apart(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str, clock: VirtualClock
) -> None:
    taipei = contact(client, tenant, name="A", phone="0912 111 111")
    bangkok = contact(client, tenant, name="B", phone="+66812345678", timezone="Asia/Bangkok")
    created = broadcast(
        client, tenant, purpose="utility", local_date="2026-11-24", local_time="10:00"
    ).json()
    # Planning starts when the first zone on Earth (UTC+14) reaches 10:00 on the 24th.
    assert created["broadcast"]["send_at"] == "2026-11-23T20:00:00.000Z"
    plan(tidings)
    assert outgoing(tidings, created["broadcast"]["id"]) == {}
    clock.advance(timedelta(hours=14))
    plan(tidings)
    rows = outgoing(tidings, created["broadcast"]["id"])
    due = {c: r["next_attempt_at"] for c, r in rows.items()}
    assert str(due[taipei]).startswith("2026-11-24 02:00")  # 10:00 in Taipei
    assert str(due[bangkok]).startswith("2026-11-24 03:00")  # 10:00 in Bangkok
    client.patch(
        f"{API}/workspace",
        json={"policy": {"daily_quota_per_number": 4, "warmup_first_day_quota": None}},
        headers=tenant.headers(),
    )
    spread = broadcast(client, tenant, name="Spread", purpose="utility").json()
    assert spread["broadcast"]["batch_size"] == 1
    plan(tidings)
    times = sorted(
        str(r["next_attempt_at"]) for r in outgoing(tidings, spread["broadcast"]["id"]).values()
    )
    # A day apart, each moved out of the night: 09:00 Taipei, then 09:00 Bangkok next day.
    assert [t[:13] for t in times] == ["2026-11-24 01", "2026-11-25 02"]


def test_cancelling_skips_what_has_not_gone_and_only_once(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str
) -> None:
    for n in range(3):
        contact(client, tenant, name=f"客戶{n}", phone=f"0912 000 10{n}")
    broadcast_id = broadcast(client, tenant).json()["broadcast"]["id"]
    plan(tidings)
    cancelled = client.post(f"{API}/broadcasts/{broadcast_id}/cancel", headers=tenant.headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    rows = outgoing(tidings, broadcast_id).values()
    assert {r["status_reason"] for r in rows} == {"P8: the broadcast was cancelled"}
    again = client.post(f"{API}/broadcasts/{broadcast_id}/cancel", headers=tenant.headers())
    assert again.status_code == 409
    other = client.get(f"{API}/broadcasts/{broadcast_id + 100}", headers=tenant.headers())
    assert other.status_code == 404


def test_a_broadcast_waits_for_its_time_and_finishes_when_nothing_waits(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str, clock: VirtualClock
) -> None:
    contact(client, tenant, name="A", phone="0912 222 222")
    subscription = client.post(  # the CRM wants to know when it is over (X1)
        f"{API}/webhooks",
        json={"url": "https://8.8.8.8/hooks", "events": ["broadcast.finished"]},  # public
        headers=tenant.headers(),
    )
    later = broadcast(client, tenant, send_at="2026-11-23T08:00:00Z").json()["broadcast"]
    plan(tidings)
    assert outgoing(tidings, later["id"]) == {}
    clock.advance(timedelta(hours=2))
    plan(tidings)
    assert len(outgoing(tidings, later["id"])) == 1
    # It goes out and WhatsApp reports it delivered, as the dispatcher and the webhook do.
    send_and_report(client, tidings, tenant, number)
    assert [r["status"] for r in outgoing(tidings, later["id"]).values()] == ["delivered"]
    plan(tidings)
    read = client.get(f"{API}/broadcasts/{later['id']}", headers=tenant.headers()).json()
    assert read["status"] == "finished" and read["finished_at"] is not None
    assert subscription.status_code == 201, subscription.text  # a public address, no DNS
    [queued] = client.get(
        f"{API}/webhooks/deliveries",
        params={"subscription_id": subscription.json()["id"]},
        headers=tenant.headers(),
    ).json()
    assert queued["event_type"] == "broadcast.finished"
    assert queued["payload"]["data"]["broadcast"]["id"] == later["id"]


def test_an_audience_may_be_a_condition_and_a_bad_one_is_refused_by_name(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str
) -> None:
    keen = contact(client, tenant, name="Keen", phone="0912 345 690", tags=["VIP"])
    contact(client, tenant, name="Cold", phone="0912 345 691", tags=["VIP"])
    contact(client, tenant, name="Other", phone="0912 345 692")
    answer = client.post(
        f"{API}/contacts/{keen}/events",
        json={"type": "product.enquiry", "properties": {"sku": "A1"}},
        headers=tenant.headers(),
    )
    assert answer.status_code == 201, answer.text
    condition = {"all": [{"has_tag": "vip"}, {"event": "product.enquiry", "within": "7d"}]}
    created = broadcast(client, tenant, audience={"condition": condition}).json()
    assert created["estimate"]["recipients"] == 1
    plan(tidings)
    assert set(outgoing(tidings, created["broadcast"]["id"])) == {keen}
    bad = broadcast(
        client, tenant, audience={"condition": {"field": "shoe_size", "op": "gt", "value": 40}}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "audience.condition.field"


def test_the_estimate_forecasts_what_planning_then_decides_quiet_hours_included(
    client: TestClient, tidings: Tidings, tenant: Tenant, number: str, clock: VirtualClock
) -> None:
    """Sent at 22:00 in Taipei: the estimate must not say "now" of messages quiet hours will
    hold until the morning. Its forecast is the planner's own decision, made beforehand."""
    contact(client, tenant, name="Taipei", phone="0912 345 601")
    contact(client, tenant, name="Bangkok", phone="+66812345602", timezone="Asia/Bangkok")
    contact(client, tenant, name="London", phone="+447911123456", timezone="Europe/London")
    contact(
        client,
        tenant,
        name="Opted out",
        phone="0912 345 604",
        consents=[{"channel": "whatsapp", "purpose": "marketing", "status": "opted_out"}],
    )
    evening = {"send_at": "2026-11-23T14:00:00Z"}  # 22:00 Taipei, 21:00 Bangkok, 14:00 London
    estimate = broadcast(client, tenant, dry_run=True, **evening).json()["estimate"]
    forecast = estimate["forecast"]
    assert forecast["decided"] == 4
    assert forecast["outcomes"] == {"queued": 1, "deferred": 2, "skipped": 1}
    [quiet] = forecast["reasons"]["deferred"]
    assert "quiet hours" in quiet and forecast["reasons"]["deferred"][quiet] == 2
    [refusal] = forecast["reasons"]["skipped"]
    assert refusal == "P5: the contact opted out of marketing messages on whatsapp"
    assert forecast["first_send_at"] == "2026-11-23T14:00:00.000Z"  # London, at once
    assert forecast["last_send_at"] == "2026-11-24T02:00:00.000Z"  # 09:00 in Bangkok

    created = broadcast(client, tenant, **evening).json()
    assert created["estimate"]["forecast"] == forecast
    clock.advance(timedelta(hours=8))
    plan(tidings)
    rows = outgoing(tidings, created["broadcast"]["id"]).values()
    planned: dict[str, int] = {}
    for row in rows:
        planned[row["status"]] = planned.get(row["status"], 0) + 1
    assert planned == forecast["outcomes"]
    deferred = {r["status_reason"] for r in rows if r["status"] == "deferred"}
    assert deferred == {quiet}
