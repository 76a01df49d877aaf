"""Sequences through the API and the worker (S1-S8): field-named errors, a branching flow on a
virtual clock, goals and exits driven by the timeline, triggers, step statistics, export →
import, preview, versions and migration, pause, workspace isolation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_dispatch_rules import send_and_report
from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.contacts.service import SETTLE_ON_POSTGRES
from tidings.kernel.clock import VirtualClock
from tidings.sequences.jobs import SequenceEvents, SequenceRunner

API = "/api/v1"
FLOW: dict[str, Any] = {
    "name": "Welcome",
    "steps": [
        {
            "id": "welcome",
            "type": "send_whatsapp",
            "purpose": "utility",
            "template": {
                "name": "welcome",
                "language": "zh_TW",
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "field": "first_name", "fallback": "朋友"}],
                    }
                ],
            },
            "next": "wait",
        },
        {"id": "wait", "type": "wait", "duration": "1d", "next": "read"},
        {"id": "read", "type": "condition", "if": {"read": "welcome"}, "yes": "tag", "no": "nudge"},
        {"id": "tag", "type": "add_tag", "tag": "engaged", "next": "offer"},
        {
            "id": "offer",
            "type": "send_whatsapp",
            "purpose": "utility",
            "template": {"name": "offer", "language": "zh_TW"},
        },
        {
            "id": "nudge",
            "type": "send_whatsapp",
            "purpose": "utility",
            "template": {"name": "nudge", "language": "zh_TW"},
        },
        {"id": "bought", "type": "goal", "when": {"event": "order.placed"}},
    ],
}


def contact(client: TestClient, tenant: Tenant, name: str, phone: str) -> int:
    answer = client.post(
        f"{API}/contacts", json={"name": name, "phone": phone}, headers=tenant.headers()
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def create(client: TestClient, tenant: Tenant, definition: Any, status: str = "active") -> Any:
    return client.post(
        f"{API}/sequences",
        json={"definition": definition, "status": status},
        headers=tenant.headers(),
    )


def run_worker(tidings: Tidings) -> None:
    """What the worker does on one pass: the timeline feed, then due steps. The feed reads
    events once they are a moment old (on PostgreSQL ids may commit out of order)."""
    assert isinstance(tidings.clock, VirtualClock)
    tidings.clock.advance(SETTLE_ON_POSTGRES + timedelta(seconds=1))
    for source in (SequenceEvents(), SequenceRunner()):
        while True:
            with tidings.db.transaction() as session:
                if source.run_batch(session, now=tidings.clock.now(), limit=500) < 500:
                    break


def sent_templates(tidings: Tidings) -> dict[int, list[str]]:
    with tidings.db.reading() as session:
        rows = session.execute(
            text(
                "SELECT contact_id, content, status FROM messages "
                "WHERE origin = 'sequence' ORDER BY id"
            )
        ).all()
    found: dict[int, list[str]] = {}
    for contact_id, content, _status in rows:
        body = content if isinstance(content, dict) else __import__("json").loads(content)
        found.setdefault(contact_id, []).append(body["template"]["name"])
    return found


def customer_writes(client: TestClient, tidings: Tidings, path: str, phone: str) -> None:
    """The contact with this phone writes to the shop, through the webhook."""
    from tests.api.test_whatsapp_webhook_endpoint import batch, post

    body = batch(f"wamid.in.{phone}")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    wa_id = "886" + phone.lstrip("0")
    body["entry"][0]["changes"][0]["value"]["contacts"] = [
        {"profile": {"name": "A"}, "wa_id": wa_id}
    ]
    message |= {"from": wa_id, "timestamp": str(int(tidings.clock.now().timestamp()))}
    post(client, path, body)
    tidings.make_worker(sources=tidings.work_sources[:2]).run_once()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"steps": [{"id": "w", "type": "wait", "duration": "3x"}]},
            "definition.steps[0].duration",
            "duration",
        ),
        (
            {"steps": [{"id": "a", "type": "add_tag", "tag": "x", "next": "zz"}]},
            "definition.steps[0].next",
            "'zz'",
        ),
        (
            {"steps": [{"id": "a", "type": "add_tag", "tag": "x"}, {"id": "b", "type": "exit"}]},
            "definition.steps[1]",
            "nothing leads",
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "add_tag", "tag": "x", "next": "b"},
                    {"id": "b", "type": "remove_tag", "tag": "x", "next": "a"},
                ]
            },
            "definition.steps[0]",
            "loop without a wait",
        ),
        (
            {"steps": [{"id": "c", "type": "condition", "if": {"has_tag": "x"}, "yes": "c"}]},
            "definition.steps[0].no",
            "",
        ),
        (
            {
                "steps": [
                    {
                        "id": "s",
                        "type": "split",
                        "branches": [{"percent": 60, "next": "s"}, {"percent": 30, "next": "s"}],
                    }
                ]
            },
            "definition.steps[0]",
            "add up to 100",
        ),
        (
            {"steps": [{"id": "x", "type": "teleport"}]},
            "definition.steps[0].type",
            "'teleport' is not a step type",
        ),
        ({"steps": [{"id": "x", "wait": "1d"}]}, "definition.steps[0].type", "needs a type"),
        (
            {
                "steps": [
                    {
                        "id": "c",
                        "type": "condition",
                        "if": {"any": [{"has_tag": f"t{n}"} for n in range(300)]},
                        "yes": "e",
                        "no": "e",
                    },
                    {"id": "e", "type": "exit"},
                ]
            },
            "definition.steps[0].if",
            "at most 200 parts",
        ),
    ],
)
def test_a_malformed_sequence_is_refused_naming_the_step_at_fault(
    client: TestClient, tenant: Tenant, change: dict[str, Any], field: str, words: str
) -> None:
    answer = create(client, tenant, {"name": "Broken", **change})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert client.get(f"{API}/sequences", headers=tenant.headers()).json() == []


def test_a_branching_sequence_sends_each_contact_what_its_behaviour_calls_for(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock, webhook_path: str
) -> None:
    reader = contact(client, tenant, "林小美", "0912345678")
    ignorer = contact(client, tenant, "陳大文", "0912345679")
    sequence = create(client, tenant, FLOW).json()
    enrolled = client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [reader, ignorer, reader, 999_999]},
        headers=tenant.headers(),
    ).json()
    assert enrolled["enrolled"] == [reader, ignorer]
    assert enrolled["refused"] == {"999999": "no such contact"}

    run_worker(tidings)
    assert sent_templates(tidings) == {reader: ["welcome"], ignorer: ["welcome"]}
    send_and_report(client, tidings, tenant, webhook_path, read_by=frozenset({reader}))
    run_worker(tidings)  # nothing is due before the day has passed
    assert sent_templates(tidings) == {reader: ["welcome"], ignorer: ["welcome"]}

    clock.advance(timedelta(days=1, minutes=6))  # the wait, then the settle delay (S8)
    run_worker(tidings)
    assert sent_templates(tidings) == {reader: ["welcome", "offer"], ignorer: ["welcome", "nudge"]}
    tags = client.get(f"{API}/contacts/{reader}", headers=tenant.headers()).json()["tags"]
    assert "engaged" in tags
    run_worker(tidings)  # running again adds nothing
    assert sent_templates(tidings) == {reader: ["welcome", "offer"], ignorer: ["welcome", "nudge"]}

    enrollments = client.get(
        f"{API}/sequences/{sequence['id']}/enrollments", headers=tenant.headers()
    ).json()
    assert {e["status"] for e in enrollments} == {"completed"}
    stats = client.get(
        f"{API}/sequences/{sequence['id']}/statistics", headers=tenant.headers()
    ).json()
    assert stats["welcome"]["entered"] == 2
    assert stats["welcome"]["sent"] == 2
    assert stats["welcome"]["read"] == 1
    assert stats["read"]["entered"] == 2
    assert stats["offer"]["entered"] == 1
    assert stats["nudge"]["entered"] == 1
    assert stats["offer"]["exited"] + stats["nudge"]["exited"] == 2


def test_an_order_pulls_the_contact_to_the_goal_and_a_reentry_rule_holds(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock, webhook_path: str
) -> None:
    buyer = contact(client, tenant, "王先生", "0912345670")
    sequence = create(client, tenant, FLOW).json()
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [buyer]},
        headers=tenant.headers(),
    )
    run_worker(tidings)  # the feed starts at the present, then the welcome goes
    clock.advance(timedelta(hours=2))
    answer = client.post(
        f"{API}/contacts/{buyer}/events", json={"type": "order.placed"}, headers=tenant.headers()
    )
    assert answer.status_code == 201
    run_worker(tidings)
    enrollment = client.get(
        f"{API}/sequences/{sequence['id']}/enrollments", headers=tenant.headers()
    ).json()[0]
    assert enrollment["status"] == "converted"
    assert enrollment["converted_at"] is not None
    clock.advance(timedelta(days=3))
    run_worker(tidings)
    assert sent_templates(tidings) == {buyer: ["welcome"]}  # no nudge after the order
    again = client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [buyer]},
        headers=tenant.headers(),
    ).json()
    assert again["enrolled"] == []
    assert "does not take anyone twice" in again["refused"][str(buyer)]
    stats = client.get(
        f"{API}/sequences/{sequence['id']}/statistics", headers=tenant.headers()
    ).json()
    assert stats["bought"]["converted"] == 1


def test_a_tag_trigger_enrolls_and_a_reply_or_an_opt_out_ends_the_enrollment(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock, webhook_path: str
) -> None:
    flow = {
        **FLOW,
        "name": "VIP",
        "triggers": [{"tag_added": "VIP"}],
        "settings": {"exit_on_reply": True},
        "steps": [{**FLOW["steps"][0], "purpose": "marketing"}, *FLOW["steps"][1:]],
    }
    sequence = create(client, tenant, flow).json()
    first = contact(client, tenant, "A", "0912345601")
    second = contact(client, tenant, "B", "0912345602")
    run_worker(tidings)  # the feed's position starts here: older tags never trigger
    for person in (first, second):
        client.post(
            f"{API}/contacts/{person}/tags", json={"tags": ["vip"]}, headers=tenant.headers()
        )
    run_worker(tidings)
    assert sent_templates(tidings) == {first: ["welcome"], second: ["welcome"]}
    clock.advance(timedelta(minutes=5))
    customer_writes(client, tidings, webhook_path, "0912345601")  # the first writes back
    client.put(
        f"{API}/contacts/{second}/consents",
        json={"channel": "whatsapp", "purpose": "marketing", "status": "opted_out"},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    enrollments = {
        e["contact_id"]: e
        for e in client.get(
            f"{API}/sequences/{sequence['id']}/enrollments", headers=tenant.headers()
        ).json()
    }
    assert enrollments[first]["status"] == "exited"
    assert enrollments[first]["end_reason"] == "the contact replied"
    assert enrollments[second]["status"] == "exited"
    assert enrollments[second]["end_reason"].startswith("opted_out")
    clock.advance(timedelta(days=2))
    run_worker(tidings)
    assert sent_templates(tidings) == {first: ["welcome"], second: ["welcome"]}


def test_an_enrollment_ends_opted_out_once_none_of_its_messages_can_go_out(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock
) -> None:
    """A utility sequence goes on for a contact who declined promotions, and ends — with the
    reason opted_out — for one who opted out of WhatsApp altogether (STOP)."""
    flow = {
        **FLOW,
        "name": "Order updates",
        "steps": [
            {**step, "purpose": "utility"} if step["type"] == "send_whatsapp" else step
            for step in FLOW["steps"]
        ],
    }
    sequence = create(client, tenant, flow).json()
    promotions_only = contact(client, tenant, "A", "0912345611")
    everything = contact(client, tenant, "B", "0912345612")
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [promotions_only, everything]},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    clock.advance(timedelta(minutes=5))  # they opt out a while after they were enrolled
    for person, purposes in (
        (promotions_only, ["marketing"]),
        (everything, ["marketing", "transactional"]),
    ):
        for purpose in purposes:
            answer = client.put(
                f"{API}/contacts/{person}/consents",
                json={"channel": "whatsapp", "purpose": purpose, "status": "opted_out"},
                headers=tenant.headers(),
            )
            assert answer.status_code == 200, answer.text
    run_worker(tidings)
    enrollments = {
        e["contact_id"]: e
        for e in client.get(
            f"{API}/sequences/{sequence['id']}/enrollments", headers=tenant.headers()
        ).json()
    }
    assert enrollments[promotions_only]["status"] == "active"
    assert enrollments[everything]["status"] == "exited"
    assert enrollments[everything]["end_reason"].startswith("opted_out")


def test_a_paused_sequence_holds_everyone_and_resuming_carries_on(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock, webhook_path: str
) -> None:
    person = contact(client, tenant, "C", "0912345603")
    sequence = create(client, tenant, FLOW).json()
    client.post(
        f"{API}/sequences/{sequence['id']}/status",
        json={"status": "paused"},
        headers=tenant.headers(),
    )
    refused = client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [person]},
        headers=tenant.headers(),
    )
    assert refused.status_code == 409
    client.post(
        f"{API}/sequences/{sequence['id']}/status",
        json={"status": "active"},
        headers=tenant.headers(),
    )
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [person]},
        headers=tenant.headers(),
    )
    client.post(
        f"{API}/sequences/{sequence['id']}/status",
        json={"status": "paused"},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    assert sent_templates(tidings) == {}
    client.post(
        f"{API}/sequences/{sequence['id']}/status",
        json={"status": "active"},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    assert sent_templates(tidings) == {person: ["welcome"]}
    removed = client.delete(
        f"{API}/sequences/{sequence['id']}/enrollments/{person}", headers=tenant.headers()
    )
    assert removed.json()["status"] == "removed"
    clock.advance(timedelta(days=2))
    run_worker(tidings)
    assert sent_templates(tidings) == {person: ["welcome"]}


def test_an_edit_makes_a_version_and_migration_never_sends_a_step_twice(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock, webhook_path: str
) -> None:
    person = contact(client, tenant, "D", "0912345604")
    sequence = create(client, tenant, FLOW).json()
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [person]},
        headers=tenant.headers(),
    )
    run_worker(tidings)  # welcome sent; waiting at "wait"
    edited = {**FLOW, "steps": [{**FLOW["steps"][0], "id": "hello"}, *FLOW["steps"][1:]]}
    edited["steps"][2] = {**edited["steps"][2], "if": {"read": "hello"}}
    answer = client.put(
        f"{API}/sequences/{sequence['id']}",
        json={"definition": edited},
        headers=tenant.headers(),
    )
    assert answer.json()["current_version"] == 2
    back = client.post(
        f"{API}/sequences/{sequence['id']}/migrate",
        json={"from_version": 1, "mapping": {"wait": "hello"}},
        headers=tenant.headers(),
    ).json()
    assert back["moved"] == {"wait": {"hello": 1}}  # dry run: hello never ran for this one
    plain = client.post(
        f"{API}/sequences/{sequence['id']}/migrate",
        json={"from_version": 1, "dry_run": False},
        headers=tenant.headers(),
    ).json()
    assert plain["moved"] == {"wait": {"wait": 1}}
    clock.advance(timedelta(days=1, minutes=6))
    run_worker(tidings)
    assert sent_templates(tidings) == {person: ["welcome", "nudge"]}


def test_export_then_import_round_trips_and_import_errors_give_the_line(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    sequence = create(client, tenant, FLOW).json()
    exported = client.get(f"{API}/sequences/{sequence['id']}/export", headers=tenant.headers()).text
    other = make_tenant(tidings, "bangkok-shop", region="TH", timezone="Asia/Bangkok")
    client.post(
        f"{API}/whatsapp-numbers",
        json=__import__("tests.api.test_whatsapp_numbers", fromlist=["x"]).number_body(),
        headers=other.headers(),
    )
    imported = client.post(
        f"{API}/sequences/import",
        content=exported,
        headers={**other.headers(), "Content-Type": "application/yaml"},
    )
    assert imported.status_code == 201, imported.text
    again = client.get(
        f"{API}/sequences/{imported.json()['sequence']['id']}/export", headers=other.headers()
    ).text
    assert again == exported
    broken = exported.replace("duration: 1d", "duration: soon")
    answer = client.post(
        f"{API}/sequences/import",
        content=broken,
        params={"name": "Copy"},
        headers={**tenant.headers(), "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 422
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "duration: soon" in t)
    assert answer.json()["error"]["message"].startswith(f"line {line}:")
    assert answer.json()["error"]["field"].endswith(".duration")


def test_preview_shows_every_message_and_branch_without_sending(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    answer = client.post(
        f"{API}/sequences/preview",
        json={
            "definition": FLOW,
            "behaviours": ["reads everything"],
            "contact": {"first_name": "Mei"},
            "start": "2026-03-02T02:00:00Z",
        },
        headers=tenant.headers(),
    ).json()
    kinds = [(e["step_id"], e["kind"]) for e in answer["entries"]]
    assert ("welcome", "message") in kinds
    assert ("offer", "message") in kinds
    assert ("nudge", "message") not in kinds
    assert "Mei" in answer["entries"][0]["text"]
    wrong = client.post(
        f"{API}/sequences/preview",
        json={"definition": FLOW, "behaviours": ["dances"]},
        headers=tenant.headers(),
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["field"] == "behaviours[0]"
    assert sent_templates(tidings) == {}


def test_another_workspace_sees_nothing_of_a_sequence(
    client: TestClient, tenant: Tenant, tidings: Tidings
) -> None:
    sequence = create(client, tenant, FLOW).json()
    other = make_tenant(tidings, "kowloon-shop", region="HK", timezone="Asia/Hong_Kong")
    for path in ("", "/enrollments", "/statistics", "/export"):
        answer = client.get(f"{API}/sequences/{sequence['id']}{path}", headers=other.headers())
        assert answer.status_code == 404, path
    assert client.get(f"{API}/sequences", headers=other.headers()).json() == []


SPLIT: dict[str, Any] = {
    "name": "Which offer",
    "steps": [
        {
            "id": "test",
            "type": "split",
            "branches": [
                {"percent": 50, "next": "plain", "name": "plain"},
                {"percent": 50, "next": "discount", "name": "discount"},
            ],
            "winner": {"metric": "converted", "after": "1d"},
        },
        {"id": "plain", "type": "wait", "duration": "3d"},
        {"id": "discount", "type": "wait", "duration": "3d"},
        {"id": "bought", "type": "goal", "when": {"event": "order.placed"}},
    ],
}


def branches_taken(tidings: Tidings, contact_ids: list[int]) -> dict[int, str]:
    with tidings.db.reading() as session:
        rows = session.execute(
            text("SELECT contact_id, detail FROM sequence_step_runs WHERE step_id = 'test'")
        ).all()
    return {c: d for c, d in rows if c in contact_ids}


def test_a_split_sends_every_new_arrival_down_the_winning_branch_after_its_test(
    client: TestClient, tenant: Tenant, tidings: Tidings, clock: VirtualClock
) -> None:
    from tidings.sequences import service

    first = [contact(client, tenant, f"Lead {n}", f"09123450{n:02d}") for n in range(24)]
    sequence = create(client, tenant, SPLIT).json()
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": first},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    taken = branches_taken(tidings, first)
    assert set(taken.values()) == {"plain", "discount"} and len(taken) == len(first)
    # Only the discount's leads buy; one plain lead does too, so the rates differ, not zero.
    buyers = [c for c in first if taken[c] == "discount"] + [
        next(c for c in first if taken[c] == "plain")
    ]
    for buyer in buyers:
        client.post(
            f"{API}/contacts/{buyer}/events",
            json={"type": "order.placed"},
            headers=tenant.headers(),
        )
    run_worker(tidings)
    with tidings.db.transaction() as session:
        assert service.choose_split_winners(session, now=clock.now()) == 0  # still testing
    clock.advance(timedelta(days=1))
    with tidings.db.transaction() as session:
        assert service.choose_split_winners(session, now=clock.now()) == 1
        assert service.choose_split_winners(session, now=clock.now()) == 0  # chosen once
    read = client.get(f"{API}/sequences/{sequence['id']}", headers=tenant.headers()).json()
    assert read["winners"] == {"test": "discount"}

    later = [contact(client, tenant, f"Late {n}", f"09223450{n:02d}") for n in range(10)]
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": later},
        headers=tenant.headers(),
    )
    run_worker(tidings)
    assert set(branches_taken(tidings, later).values()) == {"discount"}
    assert branches_taken(tidings, first) == taken  # nobody moved


def test_entering_a_segment_enrolls_the_contact(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    flow = {**FLOW, "name": "High intent follow-up", "triggers": [{"segment_entered": "Keen"}]}
    created = create(client, tenant, flow)
    assert created.status_code == 201, created.text
    keen = contact(client, tenant, "Keen one", "0912345611")
    contact(client, tenant, "Cool one", "0912345612")
    run_worker(tidings)  # the feed's position starts here
    segment = client.post(
        f"{API}/segments",
        json={"name": "Keen", "condition": {"has_tag": "keen"}},
        headers=tenant.headers(),
    )
    assert segment.status_code == 201, segment.text
    client.post(f"{API}/contacts/{keen}/tags", json={"tags": ["keen"]}, headers=tenant.headers())
    refreshed = client.post(
        f"{API}/segments/{segment.json()['id']}/refresh", headers=tenant.headers()
    ).json()
    assert refreshed["entered"] == 1
    run_worker(tidings)
    assert sent_templates(tidings) == {keen: ["welcome"]}
