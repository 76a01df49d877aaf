"""The template registry (#5): synced from the simulator's templates endpoint over a real
socket, defined locally, and every template message checked against it before it is queued —
name, approval, parameter counts — with the marketing category imposing its caps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tests.live import simulated_number
from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError
from tidings.messaging.templates import (
    TemplateShape,
    TemplateStatus,
    check_definition,
    check_send,
)
from tidings.simulator.server import RunningSimulator, SimulatorConfig
from tidings.workspaces.domain import Role

API = "/api/v1"


@pytest.fixture
def simulated(tidings: Tidings, tenant: Tenant) -> Iterator[tuple[int, RunningSimulator]]:
    with simulated_number(tidings, tenant, SimulatorConfig()) as (running, number_id, _):
        yield number_id, running


def template(name: str, language: str, *parameters: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        body["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in parameters]}
        ]
    return {"type": "template", "template": body}


def send(
    client: TestClient, tenant: Tenant, contact_id: int, content: dict[str, Any], **extra: Any
) -> Any:
    return client.post(
        f"{API}/messages",
        json={"contact_id": contact_id, "content": content, **extra},
        headers=tenant.headers(),
    )


def test_templates_sync_and_every_template_message_is_checked_against_them(
    client: TestClient, tenant: Tenant, simulated: tuple[int, RunningSimulator]
) -> None:
    number_id, _ = simulated
    contact = client.post(
        f"{API}/contacts",
        json={"name": "林怡君", "phone": "0912 345 678"},
        headers=tenant.headers(),
    ).json()["id"]
    # Before a sync, any name goes (the provider would decide).
    assert send(client, tenant, contact, template("anything", "en")).status_code == 202

    synced = client.post(
        f"{API}/whatsapp-numbers/{number_id}/templates/sync", headers=tenant.headers()
    )
    assert synced.status_code == 200, synced.text
    assert synced.json() == {"added": 4, "updated": 0, "unchanged": 0, "gone": 0}
    again = client.post(
        f"{API}/whatsapp-numbers/{number_id}/templates/sync", headers=tenant.headers()
    )
    assert again.json() == {"added": 0, "updated": 0, "unchanged": 4, "gone": 0}
    listed = client.get(f"{API}/templates", headers=tenant.headers()).json()
    assert {(t["name"], t["language"], t["category"], t["status"]) for t in listed} >= {
        ("order_update", "zh_TW", "utility", "approved"),
        ("weekly_promo", "en", "marketing", "approved"),
    }

    ok = send(client, tenant, contact, template("order_update", "zh_TW", "怡君", "A-1001"))
    assert ok.status_code == 202 and ok.json()["purpose"] == "service"
    typo = send(client, tenant, contact, template("order_updat", "zh_TW", "怡君", "A-1001"))
    assert typo.status_code == 422
    assert typo.json()["error"]["field"] == "content.template.name"
    short = send(client, tenant, contact, template("order_update", "th", "คุณเอ"))
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "content.template.components.body.parameters"
    # A marketing template is a promotion whatever the caller says (P4 applies).
    promo = send(client, tenant, contact, template("weekly_promo", "en", "20% off"))
    assert promo.json()["purpose"] == "marketing"

    # A broadcast is checked the same way, naming its own field.
    bad = client.post(
        f"{API}/broadcasts",
        json={"name": "x", "template": {"name": "nope", "language": {"code": "en"}}},
        headers=tenant.headers(),
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "template.name"


def test_a_local_definition_is_checked_and_a_withdrawn_template_is_refused(
    client: TestClient, tenant: Tenant, simulated: tuple[int, RunningSimulator]
) -> None:
    number_id, running = simulated
    # The simulator charges a template as its own category, as Meta reports it (P9).
    sent = {"type": "template", "template": {"name": "order_update", "language": {"code": "en"}}}
    assert running.simulator.pricing_category(sent) == "utility"
    assert running.simulator.pricing_category({"type": "text"}) == "service"
    body = {
        "name": "store_reopening",
        "language": "th",
        "category": "utility",
        "components": [{"type": "BODY", "text": "ร้าน {{1}} เปิดแล้ว {{2}}"}],
    }
    created = client.post(f"{API}/templates", json=body, headers=tenant.headers())
    assert created.status_code == 201 and created.json()["status"] == "local"
    duplicate = client.post(f"{API}/templates", json=body, headers=tenant.headers())
    assert duplicate.status_code == 409
    gap = {**body, "name": "gap", "components": [{"type": "BODY", "text": "{{1}} and {{3}}"}]}
    refused = client.post(f"{API}/templates", json=gap, headers=tenant.headers())
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "components[0].text"
    agent = client.post(
        f"{API}/templates", json={**body, "name": "other"}, headers=tenant.headers(Role.AGENT)
    )
    assert agent.status_code == 403

    client.post(f"{API}/whatsapp-numbers/{number_id}/templates/sync", headers=tenant.headers())
    running.simulator.templates = [  # Meta withdrew it
        t for t in running.simulator.templates if t["name"] != "weekly_promo"
    ]
    report = client.post(
        f"{API}/whatsapp-numbers/{number_id}/templates/sync", headers=tenant.headers()
    ).json()
    assert report["gone"] == 1
    contact = client.post(
        f"{API}/contacts", json={"phone": "0912 000 111"}, headers=tenant.headers()
    ).json()["id"]
    withdrawn = send(client, tenant, contact, template("weekly_promo", "en", "x"))
    assert withdrawn.status_code == 422
    assert "disabled" in withdrawn.json()["error"]["message"]
    local = send(client, tenant, contact, template("store_reopening", "th", "สีลม", "10:00"))
    assert local.status_code == 202


def test_template_rules() -> None:
    shape = TemplateShape.of(
        [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, {{2}} is on its way. {{1}}"},
            {"type": "FOOTER", "text": "Thanks"},
        ]
    )
    assert shape.counts == {"header": 1, "body": 2}
    fitting = template("t", "en", "a", "b")
    fitting["template"]["components"].append(
        {"type": "header", "parameters": [{"type": "text", "text": "A-1"}]}
    )
    check_send(shape, TemplateStatus.APPROVED, fitting)
    with pytest.raises(TidingsError) as caught:
        check_send(shape, TemplateStatus.APPROVED, template("t", "en", "a", "b"))
    assert caught.value.field == "content.template.components.header.parameters"
    with pytest.raises(TidingsError) as caught:
        check_send(shape, TemplateStatus.PAUSED, fitting)
    assert caught.value.code == "template_not_approved"
    with pytest.raises(TidingsError) as caught:
        check_definition({"name": "x", "language": "en", "category": "promo", "components": []})
    assert caught.value.field == "category"


def test_a_sequence_is_checked_against_the_registry_when_saved(
    client: TestClient, tenant: Tenant, simulated: tuple[int, RunningSimulator]
) -> None:
    number_id, _ = simulated
    client.post(f"{API}/whatsapp-numbers/{number_id}/templates/sync", headers=tenant.headers())

    def sequence(template: dict[str, Any], purpose: str = "utility") -> Any:
        step = {"id": "tell", "type": "send_whatsapp", "purpose": purpose, "template": template}
        return client.post(
            f"{API}/sequences",
            json={"definition": {"name": f"S {template['name']} {purpose}", "steps": [step]}},
            headers=tenant.headers(),
        )

    name_param = {"type": "text", "field": "first_name", "fallback": "คุณลูกค้า"}
    two = [{"type": "body", "parameters": [name_param, {"type": "text", "text": "A-1"}]}]
    typo = sequence({"name": "order_updat", "language": "zh_TW", "components": two})
    assert typo.status_code == 422
    assert typo.json()["error"]["field"] == "definition.steps[0].template.name"
    short = sequence({"name": "order_update", "language": "zh_TW", "components": two[:0]})
    assert short.status_code == 422
    assert short.json()["error"]["field"].startswith("definition.steps[0].template.components")
    promo = [{"type": "body", "parameters": [{"type": "text", "text": "20% off"}]}]
    utility_step = sequence({"name": "weekly_promo", "language": "en", "components": promo})
    assert utility_step.status_code == 422
    assert utility_step.json()["error"]["field"] == "definition.steps[0].purpose"
    marketing_step = sequence(
        {"name": "weekly_promo", "language": "en", "components": promo}, purpose="marketing"
    )
    assert marketing_step.status_code == 201, marketing_step.text
    fine = sequence({"name": "order_update", "language": "zh_TW", "components": two})
    assert fine.status_code == 201, fine.text
