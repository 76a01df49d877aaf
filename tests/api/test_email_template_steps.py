"""``send_email`` steps that name a stored e-mail template: checked when the sequence is saved,
rendered as the template stands when the step runs, carried by the sequence file and created
by its import in another workspace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.test_email_api import add_contact, add_sender, dispatch
from tests.api.test_sequences_api import run_worker
from tests.conftest import Tenant, make_tenant
from tests.smtp_sink import SinkHandler, smtp_sink
from tidings.bootstrap import Tidings
from tidings.sequences.orm import StepRunRecord

API = "/api/v1"
WELCOME = {
    "name": "welcome",
    "subject": "{{ contact.first_name }}，歡迎來到茶行",
    "html": "<p>{{ contact.first_name }}您好，這是您的第一堂茶課。</p>",
}
SERIES: dict[str, Any] = {
    "name": "Welcome series",
    "settings": {"reentry": {"mode": "always"}},
    "steps": [{"id": "welcome", "type": "send_email", "template": "welcome", "purpose": "utility"}],
}


@pytest.fixture
def sink() -> Iterator[tuple[int, SinkHandler]]:
    with smtp_sink() as (controller, handler):
        yield controller.port, handler


def create_template(client: TestClient, tenant: Tenant, **data: Any) -> dict[str, Any]:
    response = client.post(f"{API}/email/templates", json=data, headers=tenant.headers())
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def enroll(client: TestClient, tenant: Tenant, sequence_id: int, contact_id: int) -> None:
    response = client.post(
        f"{API}/sequences/{sequence_id}/enrollments",
        json={"contact_ids": [contact_id]},
        headers=tenant.headers(),
    )
    assert response.json()["enrolled"] == [contact_id], response.text


def test_a_step_renders_the_stored_template_as_it_stands_when_the_step_runs(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    contact = add_contact(client, tenant, "yijun@example.org", name="林怡君")

    unknown = client.post(f"{API}/sequences", json={"definition": SERIES}, headers=tenant.headers())
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "definition.steps[0].template"
    assert "welcome" in unknown.json()["error"]["message"]

    template = create_template(client, tenant, **WELCOME)
    sequence = client.post(
        f"{API}/sequences", json={"definition": SERIES, "status": "active"},
        headers=tenant.headers(),
    ).json()  # fmt: skip
    enroll(client, tenant, sequence["id"], contact)
    run_worker(tidings)
    assert dispatch(tidings) == 1
    (first,) = handler.wait_for(1)
    assert first.message["Subject"] == "怡君，歡迎來到茶行"
    assert "怡君您好，這是您的第一堂茶課。" in first.body("html")
    assert "怡君您好" in first.body("plain")  # the text part, derived from the HTML

    # An edit to the template reaches the next send, without a new sequence version.
    edited = client.patch(
        f"{API}/email/templates/{template['id']}",
        json={"subject": "{{ contact.first_name }}，冬季茶課開始了"},
        headers=tenant.headers(),
    )
    assert edited.is_success, edited.text
    enroll(client, tenant, sequence["id"], contact)
    run_worker(tidings)
    dispatch(tidings)
    assert handler.wait_for(2)[-1].message["Subject"] == "怡君，冬季茶課開始了"

    # A template deleted under a running sequence: the step is skipped, saying why.
    deleted = client.delete(f"{API}/email/templates/{template['id']}", headers=tenant.headers())
    assert deleted.status_code == 204
    enroll(client, tenant, sequence["id"], contact)
    run_worker(tidings)
    assert dispatch(tidings) == 0
    with tidings.db.reading() as session:
        runs = session.execute(
            select(StepRunRecord.enrollment_id, StepRunRecord.outcome, StepRunRecord.detail)
            .where(StepRunRecord.outcome != "left")
            .order_by(StepRunRecord.id)
        ).all()
    assert [r.outcome for r in runs] == ["sent", "sent", "skipped"]
    assert runs[-1].detail == "the e-mail template 'welcome' no longer exists"


def test_a_step_names_a_template_or_writes_its_own_never_both(
    client: TestClient, tenant: Tenant
) -> None:
    create_template(client, tenant, **WELCOME)
    both = {**SERIES["steps"][0], "subject": "Hello"}
    response = client.post(
        f"{API}/sequences",
        json={"definition": {**SERIES, "steps": [both]}},
        headers=tenant.headers(),
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"].startswith("definition.steps[0]")
    neither = {"id": "welcome", "type": "send_email", "subject": "Hello"}
    response = client.post(
        f"{API}/sequences",
        json={"definition": {**SERIES, "steps": [neither]}},
        headers=tenant.headers(),
    )
    assert response.status_code == 422
    assert "a subject and a body" in response.json()["error"]["message"]


def test_the_file_carries_the_template_and_its_import_creates_it_elsewhere(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    template = create_template(client, tenant, **WELCOME, text="{{ contact.first_name }}您好")
    client.patch(
        f"{API}/email/templates/{template['id']}",
        json={"html": "<p>{{ contact.first_name }}您好，第一堂課：烏龍茶。</p>"},
        headers=tenant.headers(),
    )
    sequence = client.post(
        f"{API}/sequences", json={"definition": SERIES}, headers=tenant.headers()
    ).json()
    exported = client.get(f"{API}/sequences/{sequence['id']}/export", headers=tenant.headers()).text
    carried = yaml.safe_load(exported)["email_templates"]
    assert carried == [
        {
            "name": "welcome",
            "subject": WELCOME["subject"],
            "html": "<p>{{ contact.first_name }}您好，第一堂課：烏龍茶。</p>",
            "text": "{{ contact.first_name }}您好",
        }
    ]

    other = make_tenant(tidings, "kaohsiung-shop")
    imported = client.post(
        f"{API}/sequences/import",
        content=exported.encode(),
        headers={**other.headers(), "Content-Type": "application/yaml"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["email_templates_defined"] == ["welcome"]
    there = client.get(f"{API}/email/templates", headers=other.headers()).json()
    assert [(t["name"], t["html"]) for t in there] == [("welcome", carried[0]["html"])]
    # The same bytes come back out of the other workspace (S6).
    again = client.get(
        f"{API}/sequences/{imported.json()['sequence']['id']}/export", headers=other.headers()
    ).text
    assert again == exported

    # A workspace that already has a template by that name keeps its own.
    mine = create_template(
        client, make_tenant(tidings, "tainan-shop"), **{**WELCOME, "html": "<p>台南</p>"}
    )
    assert mine["html"] == "<p>台南</p>"
