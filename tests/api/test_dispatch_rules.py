"""The dispatcher's own rules on a real database, without a provider in the way: the pair
limit (P6), the uncertain window after a crash, and statuses that overtake their send."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_whatsapp_webhook_endpoint import batch, post
from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.channels.whatsapp.client import SendOutcome
from tidings.kernel.clock import VirtualClock
from tidings.messaging import inbox, repository
from tidings.messaging import service as messaging
from tidings.messaging.dispatch import OutboundDispatcher, record_outcome
from tidings.messaging.domain import Origin, Purpose
from tidings.workspaces import service as workspaces

API = "/api/v1"


def a_conversation(client: TestClient, tidings: Tidings, tenant: Tenant, path: str) -> int:
    """A customer writes now (``batch`` carries a year-old time: the window would be shut)."""
    body = batch("wamid.in1")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["timestamp"] = str(int(tidings.clock.now().timestamp()))
    post(client, path, body)
    tidings.make_worker().run_once()
    (conversation,) = client.get(f"{API}/conversations", headers=tenant.headers()).json()["items"]
    conversation_id: int = conversation["id"]
    return conversation_id


def queue(tidings: Tidings, tenant: Tenant, conversation_id: int, **extra: Any) -> int:
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        conversation = inbox.get_conversation_or_404(session, workspace, conversation_id)
        message = messaging.queue_message(
            session,
            workspace=workspace,
            request=messaging.SendRequest(
                contact_id=conversation.contact_id,
                content=extra.pop("content", {"type": "text", "text": {"body": "hello"}}),
                origin=extra.pop("origin", Origin.API),
                **extra,
            ),
            now=tidings.clock.now(),
        )
        return message.id


def dispatcher(tidings: Tidings) -> OutboundDispatcher:
    return OutboundDispatcher(box=tidings.secret_box, client=tidings.whatsapp)


def send_and_report(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    path: str,
    *,
    read_by: frozenset[int] = frozenset(),
) -> None:
    """The queued messages go out — claimed and accepted as the dispatcher records them — and
    WhatsApp reports each delivered, and read by the contacts in ``read_by``, through the
    webhook; the worker takes the reports in."""
    from tests.api.test_whatsapp_webhook_endpoint import batch, post
    from tidings.channels.whatsapp.client import SendOutcome
    from tidings.messaging import inbox
    from tidings.messaging.dispatch import record_outcome
    from tidings.workspaces import service as workspaces

    reports: list[tuple[str, str]] = []
    with tidings.db.transaction() as session:
        claimed = dispatcher(tidings).claim(session, now=tidings.clock.now(), limit=100)
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None and claimed.jobs
        for job in claimed.jobs:
            row = inbox.get_message_or_404(session, workspace, job.message_id)
            wamid = f"wamid.OUT{job.message_id}"
            accepted = SendOutcome("accepted", message_id=wamid)
            record_outcome(session, row, accepted, max_retries=2, now=tidings.clock.now())
            reports.append((wamid, "delivered"))
            if row.contact_id in read_by:
                reports.append((wamid, "read"))
    post(client, path, batch(statuses=tuple(reports)))
    tidings.make_worker(sources=tidings.work_sources[:2]).run_once()


def message(client: TestClient, tenant: Tenant, message_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(
        f"{API}/messages/{message_id}", headers=tenant.headers()
    ).json()
    return body


def test_one_contact_gets_one_message_per_six_seconds(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    ids = [queue(tidings, tenant, conversation_id) for _ in range(3)]
    with tidings.db.transaction() as session:
        claimed = dispatcher(tidings).claim(session, now=clock.now(), limit=10)
        jobs, held = claimed.jobs, claimed.held
    assert [job.message_id for job in jobs] == ids[:1] and held == 2
    later = [message(client, tenant, i) for i in ids[1:]]
    assert all(m["status"] == "queued" and m["attempts"] == 0 for m in later)
    assert {m["next_attempt_at"] for m in later} == {"2026-11-23T06:00:06.000Z"}
    with tidings.db.transaction() as session:
        jobs = dispatcher(tidings).claim(session, now=clock.now(), limit=10).jobs
    assert jobs == []  # not yet due
    clock.advance(timedelta(seconds=6))
    with tidings.db.transaction() as session:
        jobs = dispatcher(tidings).claim(session, now=clock.now(), limit=10).jobs
    assert [job.message_id for job in jobs] == ids[1:2]


def test_after_a_crash_only_requests_in_flight_are_uncertain_and_only_service_ones_resent(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    claimed: list[int] = []
    for purpose in (Purpose.UTILITY, Purpose.MARKETING, Purpose.UTILITY, Purpose.UTILITY):
        queue(tidings, tenant, conversation_id, purpose=purpose)
        with tidings.db.transaction() as session:
            jobs = dispatcher(tidings).claim(session, now=clock.now(), limit=10).jobs
        claimed += [job.message_id for job in jobs]
        clock.advance(timedelta(seconds=6))  # the pair limit lets one go at a time
    receipt, promotion, answered, never_sent = claimed
    # The worker dies here, with all four "sending": two requests were on the wire (their
    # marks committed), one was answered (its id kept), one had not left yet.
    with tidings.db.transaction() as session:
        repository.mark_on_wire(
            session.connection(), [receipt, promotion, answered], now=clock.now()
        )
        repository.note_provider_ids(session.connection(), [(answered, "wamid.ANSWERED")])
    clock.advance(timedelta(minutes=4))
    with tidings.db.transaction() as session:
        assert messaging.recover_in_flight(session, now=clock.now()) == 0  # still leased
    clock.advance(timedelta(minutes=2))
    with tidings.db.transaction() as session:
        assert messaging.recover_in_flight(session, now=clock.now()) == 4
    resent, kept = message(client, tenant, receipt), message(client, tenant, promotion)
    assert resent["status"] == "queued" and "resending" in resent["status_reason"]
    assert kept["status"] == "uncertain" and "not resent" in kept["status_reason"]
    assert message(client, tenant, answered)["status"] == "accepted"
    waiting = message(client, tenant, never_sent)
    assert waiting["status"] == "queued" and "before sending it" in waiting["status_reason"]
    assert waiting["attempts"] == 0  # the attempt never happened
    outcomes = [
        t["outcome"]
        for t in client.get(f"{API}/messages/{promotion}/traces", headers=tenant.headers()).json()
    ]
    assert outcomes == ["queued", "uncertain"]


def test_a_status_that_overtakes_its_send_record_is_applied_when_the_record_lands(
    client: TestClient, tidings: Tidings, tenant: Tenant, webhook_path: str, clock: VirtualClock
) -> None:
    conversation_id = a_conversation(client, tidings, tenant, webhook_path)
    message_id = queue(tidings, tenant, conversation_id)
    with tidings.db.transaction() as session:
        dispatcher(tidings).claim(session, now=clock.now(), limit=10)
    # WhatsApp's "delivered" arrives before the dispatcher recorded the wamid.
    post(client, webhook_path, batch(statuses=(("wamid.OUT1", "delivered"),)))
    tidings.make_worker(sources=tidings.work_sources).run_once()
    assert message(client, tenant, message_id)["status"] == "sending"
    with tidings.db.transaction() as session:
        row = inbox.get_message_or_404(
            session, workspaces.get_workspace(session, tenant.workspace_id), message_id
        )  # type: ignore[arg-type]
        record_outcome(
            session,
            row,
            SendOutcome("accepted", message_id="wamid.OUT1"),
            max_retries=2,
            now=clock.now(),
        )
    assert message(client, tenant, message_id)["status"] == "accepted"
    clock.advance(timedelta(seconds=6))
    tidings.make_worker(sources=tidings.work_sources).run_once()
    final = message(client, tenant, message_id)
    assert final["status"] == "delivered" and final["delivered_at"] is not None
