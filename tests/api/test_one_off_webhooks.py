"""One-off webhooks (#4's webhook step, #6's webhook action) to a receiver on loopback: signed
with the workspace's secret that admins can read, and refused for a private address until
the operator allows it for the workspace (no SSRF)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.api.test_sequences_api import contact, create
from tests.conftest import Tenant
from tests.receiver import Receiver, receiver
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.webhooks.domain import verify
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

API = "/api/v1"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def flow(url: str) -> dict[str, Any]:
    return {
        "name": "Tell the CRM",
        "steps": [
            {"id": "ping", "type": "webhook", "url": url, "payload": {"campaign": "welcome"}},
        ],
    }


def run(tidings: Tidings, passes: int = 3) -> None:
    jobs = [s for s in tidings.all_sources() if s.name == "background_jobs"]
    worker = tidings.make_worker(sources=[*tidings.work_sources, *jobs])
    worker.periodic = []
    assert isinstance(tidings.clock, VirtualClock)
    for _ in range(passes):
        tidings.clock.advance(timedelta(seconds=3))
        worker.run_once()


def jobs(tidings: Tidings) -> list[tuple[str, str | None]]:
    with tidings.db.reading() as session:
        rows = session.execute(
            text("SELECT state, last_error FROM background_jobs WHERE kind = 'sequence.webhook'")
        ).all()
    return [(state, error) for state, error in rows]


def allow_private(tidings: Tidings, tenant: Tenant, allow: bool) -> None:
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        workspaces.allow_private_webhooks(session, workspace, allow=allow, now=tidings.clock.now())


def test_a_sequence_webhook_step_is_signed_and_refused_for_a_private_address_until_allowed(
    client: TestClient, tenant: Tenant, tidings: Tidings, hook: Receiver
) -> None:
    # Refused when saved, naming the step's address.
    refused = create(client, tenant, flow(hook.url))
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "definition.steps[0].url"
    assert "non-public address 127.0.0.1" in refused.json()["error"]["message"]

    # Saved once the operator allows it; refused when sent after the permission is withdrawn.
    allow_private(tidings, tenant, True)
    sequence = create(client, tenant, flow(hook.url)).json()
    allow_private(tidings, tenant, False)
    first = contact(client, tenant, "林小美", "0912345678")
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [first]},
        headers=tenant.headers(),
    )
    run(tidings)
    assert hook.received == []
    # Failed at once with the reason, not retried: no retry can reach a refused address.
    [(state, error)] = jobs(tidings)
    assert state == "dead" and "non-public address 127.0.0.1" in (error or "")
    # And the step shows as failed with that reason, not as done.
    with tidings.db.reading() as session:
        runs = session.execute(
            text("SELECT outcome, detail FROM sequence_step_runs ORDER BY id")
        ).all()
    (step_outcome, detail), (end, _) = runs
    assert step_outcome == "failed" and "non-public address 127.0.0.1" in detail
    assert end == "left"  # the sequence went on: one failed webhook does not stop it

    allow_private(tidings, tenant, True)
    second = contact(client, tenant, "陳大文", "0912345679")
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [second]},
        headers=tenant.headers(),
    )
    run(tidings)
    [got] = [r for r in hook.received if r.json()["contact_id"] == second]
    assert got.json()["event"] == "sequence.step"
    assert got.json()["payload"] == {"campaign": "welcome"}
    secret = client.get(f"{API}/webhooks/signing-secret", headers=tenant.headers()).json()["secret"]
    assert verify(
        secret,
        timestamp=got.headers["x-tidings-timestamp"],
        signature=got.headers["x-tidings-signature"],
        body=got.body,
        now=tidings.clock.now(),
    )
    agent = client.get(f"{API}/webhooks/signing-secret", headers=tenant.headers(Role.AGENT))
    assert agent.status_code == 403


def test_a_rule_webhook_to_a_private_address_is_refused_when_saved(
    client: TestClient, tenant: Tenant, tidings: Tidings
) -> None:
    rule = {
        "name": "Tell the CRM",
        "definition": {
            "trigger": {"on": "message_received"},
            "actions": [
                {"do": "add_tag", "tag": "wrote"},
                {"do": "webhook", "url": "http://169.254.169.254/latest/meta-data"},
            ],
        },
    }
    refused = client.post(f"{API}/rules", json=rule, headers=tenant.headers())
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "definition.actions[1].url"
    saved = client.get(f"{API}/rules", headers=tenant.headers()).json()
    assert "Tell the CRM" not in {r["name"] for r in saved}
    allow_private(tidings, tenant, True)
    assert client.post(f"{API}/rules", json=rule, headers=tenant.headers()).status_code == 201


def test_a_rule_webhook_refused_when_sent_shows_the_run_failed_with_the_reason(
    client: TestClient, tenant: Tenant, tidings: Tidings, webhook_path: str
) -> None:
    """Saved while private addresses were allowed, sent after that was withdrawn: the run
    that asked for it reads "failed" with why — never "fired"."""
    from tests.api.test_whatsapp_webhook_endpoint import batch, post

    allow_private(tidings, tenant, True)
    rule = {
        "name": "Tell the CRM",
        "definition": {
            "trigger": {"on": "message_received"},
            "actions": [{"do": "webhook", "url": "http://127.0.0.1:9/hook"}],
        },
        "enabled": True,
    }
    saved = client.post(f"{API}/rules", json=rule, headers=tenant.headers())
    assert saved.status_code == 201, saved.text
    allow_private(tidings, tenant, False)
    run(tidings, passes=1)  # the rules engine starts reading the timeline from now
    body = batch("wamid.ruled")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(
        int(tidings.clock.now().timestamp())
    )
    post(client, webhook_path, body)
    run(tidings, passes=4)
    runs = client.get(f"{API}/rules/{saved.json()['id']}/runs", headers=tenant.headers()).json()
    [only] = runs
    assert only["status"] == "failed", only
    assert "non-public address 127.0.0.1" in only["reason"]
