"""Duplicates and merge end to end (C3): the same customer writing from two numbers is found
(names alike and the same SKU bought), merged with nothing of either lost — conversations on
the same number become one, tags and lists are joined, an opt-out stays an opt-out — the
merge is in the audit log, and undoing it gives back both contacts as they were."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_automation_rules import run, says
from tests.api.test_whatsapp_webhook_endpoint import post
from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.workspaces.domain import Role

API = "/api/v1"


def customer_writes(
    client: TestClient, tidings: Tidings, path: str, wa_id: str, name: str, words: str
) -> None:
    body = says(tidings, words, wa_id=wa_id)
    body["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = name
    assert post(client, path, body).status_code == 200
    run(tidings, 1)


def contact_by_phone(client: TestClient, tenant: Tenant, phone: str) -> dict[str, Any]:
    found = client.get(f"{API}/contacts", params={"q": phone}, headers=tenant.headers()).json()
    [one] = [c for c in found["items"] if c["phone"] == phone]
    return one


def counts(tidings: Tidings) -> dict[str, int]:
    with tidings.db.reading() as session:
        return {
            table: int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608 — fixed names
            for table in ("messages", "contact_events", "conversation_notes")
        }


def conversation_of(client: TestClient, tenant: Tenant, contact_id: int) -> list[dict[str, Any]]:
    page = client.get(
        f"{API}/conversations", params={"contact_id": contact_id}, headers=tenant.headers()
    ).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def test_the_same_customer_on_two_numbers_is_found_merged_losing_nothing_and_unmerged(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    headers = tenant.headers()
    customer_writes(client, tidings, webhook_path, "66811111111", "Somchai Jaidee", "สวัสดีครับ")
    customer_writes(client, tidings, webhook_path, "66822222222", "somchai  jaidee.", "เบอร์ใหม่ครับ")
    customer_writes(client, tidings, webhook_path, "66833333333", "Somchai Srisuk", "hello")
    first = contact_by_phone(client, tenant, "+66811111111")
    second = contact_by_phone(client, tenant, "+66822222222")
    other = contact_by_phone(client, tenant, "+66833333333")
    for contact_id, tags in ((first["id"], ["vip"]), (second["id"], ["vip", "lead"])):
        assert (
            client.post(
                f"{API}/contacts/{contact_id}/tags", json={"tags": tags}, headers=headers
            ).status_code
            == 200
        )
    for contact_id in (first["id"], second["id"], other["id"]):
        answer = client.post(
            f"{API}/contacts/{contact_id}/events",
            json={
                "type": "order.placed",
                "properties": {"order_id": f"SO-{contact_id}", "skus": ["APL-IP15PM"]},
            },
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
    for contact_id, status in ((first["id"], "opted_in"), (second["id"], "opted_out")):
        client.put(
            f"{API}/contacts/{contact_id}/consents",
            json={"channel": "whatsapp", "purpose": "marketing", "status": status},
            headers=headers,
        )
    client.patch(
        f"{API}/contacts/{second['id']}", json={"email": "somchai@example.th"}, headers=headers
    )
    [conversation] = conversation_of(client, tenant, second["id"])
    client.post(
        f"{API}/conversations/{conversation['id']}/notes",
        json={"body": "new number, same man"},
        headers=headers,
    )

    # Both are in the same nurture sequence (and only the second in another).
    nurture = client.post(
        f"{API}/sequences",
        json={
            "definition": {
                "name": "Nurture",
                "steps": [
                    {"id": "wait", "type": "wait", "duration": "7d", "next": "tag"},
                    {"id": "tag", "type": "add_tag", "tag": "nurtured"},
                ],
            },
            "status": "active",
        },
        headers=headers,
    ).json()
    for contact_id in (first["id"], second["id"]):
        client.post(
            f"{API}/sequences/{nurture['id']}/enrollments",
            json={"contact_ids": [contact_id]},
            headers=headers,
        )

    def enrolled() -> list[int]:
        rows = client.get(f"{API}/sequences/{nurture['id']}/enrollments", headers=headers).json()
        return sorted(r["contact_id"] for r in rows)

    assert enrolled() == sorted([first["id"], second["id"]])

    # Found: names alike and the same SKU bought; "Somchai Srisuk" bought it too but is not alike.
    found = client.get(f"{API}/duplicates", headers=headers).json()
    [pair] = found["items"]
    assert {pair["first"]["id"], pair["second"]["id"]} == {first["id"], second["id"]}
    assert pair["name_similarity"] == 100.0
    assert pair["reasons"] == ["names 100% alike", "both bought APL-IP15PM within 90 days"]

    before = counts(tidings)
    merged = client.post(
        f"{API}/merges",
        json={"survivor_id": first["id"], "merged_id": second["id"], "reasons": pair["reasons"]},
        headers=headers,
    )
    assert merged.status_code == 201, merged.text
    merge = merged.json()
    assert merge["removed_duplicates"] >= 2  # the second conversation and the repeated tag
    assert client.get(f"{API}/contacts/{second['id']}", headers=headers).status_code == 404
    survivor = client.get(f"{API}/contacts/{first['id']}", headers=headers).json()
    assert survivor["phone"] == "+66811111111"
    assert survivor["email"] == "somchai@example.th"  # filled from the merged contact
    assert sorted(survivor["tags"]) == ["lead", "vip"]
    [consent] = [c for c in survivor["consents"] if c["purpose"] == "marketing"]
    assert consent["status"] == "opted_out"  # the stricter answer stays
    after = counts(tidings)
    assert after["messages"] == before["messages"]  # none lost
    assert after["conversation_notes"] == before["conversation_notes"]
    assert after["contact_events"] == before["contact_events"] + 1  # + contact.merged
    [one] = conversation_of(client, tenant, first["id"])  # two conversations on one number: one
    messages = client.get(f"{API}/conversations/{one['id']}/messages", headers=headers).json()
    texts = {m["text"] for m in messages["items"]}
    assert {"สวัสดีครับ", "เบอร์ใหม่ครับ"} <= texts
    events = client.get(f"{API}/contacts/{first['id']}/events", headers=headers).json()
    kinds = [e["type"] for e in events["items"]]
    assert kinds.count("message.received") == 2 and kinds.count("order.placed") == 2
    assert "contact.merged" in kinds
    assert client.get(f"{API}/duplicates", headers=headers).json()["items"] == []
    assert enrolled() == [first["id"]]  # one enrollment per sequence: the survivor's
    [audit] = client.get(
        f"{API}/merges", params={"contact_id": first["id"]}, headers=headers
    ).json()
    assert audit["merged_by"] and audit["reasons"] == pair["reasons"]

    # Undone: both come back as they were; the merged one under a new id.
    undone = client.post(f"{API}/merges/{merge['id']}/undo", headers=headers)
    assert undone.status_code == 200, undone.text
    restored_id = undone.json()["restored_id"]
    assert restored_id is not None
    back = client.get(f"{API}/contacts/{restored_id}", headers=headers).json()
    assert (back["phone"], back["email"], back["name"]) == (
        "+66822222222",
        "somchai@example.th",
        "somchai jaidee.",
    )
    assert sorted(back["tags"]) == ["lead", "vip"]
    assert [c["status"] for c in back["consents"] if c["purpose"] == "marketing"] == ["opted_out"]
    survivor = client.get(f"{API}/contacts/{first['id']}", headers=headers).json()
    assert survivor["email"] is None and survivor["tags"] == ["vip"]
    assert [c["status"] for c in survivor["consents"] if c["purpose"] == "marketing"] == [
        "opted_in"
    ]
    assert len(conversation_of(client, tenant, first["id"])) == 1
    [restored_conversation] = conversation_of(client, tenant, restored_id)
    notes = client.get(f"{API}/conversations/{restored_conversation['id']}/notes", headers=headers)
    assert [n["body"] for n in notes.json()] == ["new number, same man"]
    restored_events = client.get(f"{API}/contacts/{restored_id}/events", headers=headers).json()
    restored_kinds = [e["type"] for e in restored_events["items"]]
    assert (
        restored_kinds.count("message.received") == 1 and restored_kinds.count("order.placed") == 1
    )
    assert counts(tidings)["messages"] == before["messages"]
    assert enrolled() == sorted([first["id"], restored_id])

    again = client.post(f"{API}/merges/{merge['id']}/undo", headers=headers)
    assert again.status_code == 409


def test_merge_refusals(client: TestClient, tenant: Tenant, tidings: Tidings) -> None:
    headers = tenant.headers()
    one = client.post(f"{API}/contacts", json={"phone": "+66844444444"}, headers=headers).json()
    two = client.post(f"{API}/contacts", json={"phone": "+66855555555"}, headers=headers).json()
    itself = client.post(
        f"{API}/merges", json={"survivor_id": one["id"], "merged_id": one["id"]}, headers=headers
    )
    assert itself.status_code == 422 and itself.json()["error"]["field"] == "merged_id"
    agent = client.post(
        f"{API}/merges",
        json={"survivor_id": one["id"], "merged_id": two["id"]},
        headers=tenant.headers(Role.AGENT),
    )
    assert agent.status_code == 403
    stranger = make_tenant(tidings, "other-shop")
    theirs = client.post(
        f"{API}/merges",
        json={"survivor_id": one["id"], "merged_id": two["id"]},
        headers=stranger.headers(),
    )
    assert theirs.status_code == 404
    assert client.get(f"{API}/contacts/{two['id']}", headers=headers).status_code == 200


def test_after_a_merge_the_second_number_reaches_the_one_contact_and_undo_restores_both(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    """The merged contact's phone and WhatsApp id stay the survivor's: the customer writing
    from the second number again reaches the survivor — with the opt-out given on it — and
    does not start a new contact with no consents. Undo gives each back its own."""
    headers = tenant.headers()
    customer_writes(client, tidings, webhook_path, "66811111111", "Somchai", "hi")
    customer_writes(client, tidings, webhook_path, "66822222222", "Somchai", "STOP")
    first = contact_by_phone(client, tenant, "+66811111111")
    second = contact_by_phone(client, tenant, "+66822222222")
    merged = client.post(
        f"{API}/merges",
        json={"survivor_id": first["id"], "merged_id": second["id"], "reasons": ["same man"]},
        headers=headers,
    )
    assert merged.status_code == 201, merged.text

    customer_writes(client, tidings, webhook_path, "66822222222", "Somchai", "สั่งของครับ")
    listed = client.get(f"{API}/contacts", params={"limit": 50}, headers=headers).json()["items"]
    assert [c["id"] for c in listed] == [first["id"]]  # no new contact
    survivor = client.get(f"{API}/contacts/{first['id']}", headers=headers).json()
    assert {c["status"] for c in survivor["consents"] if c["channel"] == "whatsapp"} == {
        "opted_out"
    }
    events = client.get(f"{API}/contacts/{first['id']}/events", headers=headers).json()["items"]
    assert "สั่งของครับ" in [e["properties"].get("text") for e in events]

    undone = client.post(f"{API}/merges/{merged.json()['id']}/undo", headers=headers)
    assert undone.status_code == 200, undone.text
    back = client.get(f"{API}/contacts/{undone.json()['restored_id']}", headers=headers).json()
    assert back["phone"] == "+66822222222"
    assert back["external_ids"] == {"whatsapp": "66822222222"}
    survivor = client.get(f"{API}/contacts/{first['id']}", headers=headers).json()
    assert survivor["external_ids"] == {"whatsapp": "66811111111"}
    with tidings.db.reading() as session:
        assert session.execute(text("SELECT count(*) FROM contact_aliases")).scalar_one() == 0
