"""The dashboard's conversation reports over the API (R1): the heat-map of when customers
write, and how fast each agent answers them — automation's replies do not count."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.api.test_dispatch_rules import a_conversation, queue
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.messaging.domain import Origin
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

API = "/api/v1"


def an_agent(tidings: Tidings, tenant: Tenant) -> int:
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        user = workspaces.create_user(
            session,
            workspace=workspace,
            email="kai@teahouse.example",
            name="Kai",
            role=Role.AGENT,
            password=None,
            granted_by=Role.OWNER,
            now=tidings.clock.now(),
        )
        return user.id


def test_when_customers_write_and_how_fast_agents_answer(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    agent_id = an_agent(tidings, tenant)
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    clock.advance(timedelta(minutes=1))
    queue(tidings, tenant, conversation_id, origin=Origin.AUTOMATION)  # still waiting
    clock.advance(timedelta(minutes=7))
    queue(tidings, tenant, conversation_id, origin=Origin.AGENT, author_id=agent_id)

    activity = client.get(f"{API}/reports/activity", headers=tenant.headers()).json()
    assert activity["timezone"] == "Asia/Taipei"
    # The clock starts Monday 2026-11-23 06:00 UTC: 14:00 on Monday in Taipei.
    assert activity["grid"][0][14] == 1 and sum(map(sum, activity["grid"])) == 1
    assert (activity["inbound"], activity["outbound"]) == (1, 2)

    answers = client.get(f"{API}/reports/response-times", headers=tenant.headers()).json()
    assert (answers["target_seconds"], answers["slow_after_seconds"]) == (180, 360)
    (kai,) = answers["agents"]
    assert kai["agent_id"] == agent_id and kai["answered"] == 1
    assert kai["median_seconds"] == 480 and kai["within_target"] == 0 and kai["slow"] is True

    # A week later, the last seven days hold nothing.
    clock.advance(timedelta(days=8))
    later = client.get(f"{API}/reports/activity?days=7", headers=tenant.headers()).json()
    assert later["inbound"] == 0


def test_a_period_out_of_range_is_refused_naming_days(client: TestClient, tenant: Tenant) -> None:
    for days in ("0", "400", "soon"):
        response = client.get(f"{API}/reports/activity?days={days}", headers=tenant.headers())
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "days"
