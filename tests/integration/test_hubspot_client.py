"""The HubSpot client against HubSpot's documented contract (a local fake built from the API
reference, through httpx.MockTransport): batches of at most 100, search paging, note
associations, and how failures are classed for retries (X3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fake_hubspot import TOKEN, FakeHubSpot
from tidings.crm_sync.hubspot import CrmError, HubSpotClient

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_upserts_go_in_batches_of_one_hundred_and_come_back_with_ids() -> None:
    fake = FakeHubSpot(lambda: NOW)
    client = HubSpotClient(TOKEN, transport=fake.transport())
    inputs = [
        {"idProperty": "email", "id": f"c{n}@example.th", "properties": {"firstname": f"C{n}"}}
        for n in range(150)
    ]
    done = client.upsert_contacts(inputs)
    assert len(done) == 150 and len(fake.contacts) == 150
    assert [len(body["inputs"]) for _, body in fake.calls] == [100, 50]
    assert all(r.id and r.properties["email"].endswith("@example.th") for r in done)


def test_changed_contacts_follow_the_paging_and_the_time_filter() -> None:
    moments = iter([NOW + timedelta(seconds=n) for n in range(300)])
    fake = FakeHubSpot(lambda: next(moments))
    for n in range(250):
        fake.add_contact(email=f"p{n}@example.th", firstname=f"P{n}")
    client = HubSpotClient(TOKEN, transport=fake.transport())
    everything = client.changed_contacts(0, ["firstname"])
    assert len(everything) == 250
    assert [body.get("after") for _, body in fake.calls] == [None, "100", "200"]
    since = int((NOW + timedelta(seconds=200)).timestamp() * 1000)
    assert len(client.changed_contacts(since, ["firstname"])) == 50
    assert (
        "firstname" in everything[0].properties and "lastmodifieddate" in everything[0].properties
    )


def test_notes_are_associated_with_their_contact() -> None:
    fake = FakeHubSpot(lambda: NOW)
    contact_id = fake.add_contact(email="a@example.th")
    client = HubSpotClient(TOKEN, transport=fake.transport())
    ids = client.create_notes([{"contact_id": contact_id, "at": NOW, "body": "Customer: hello"}])
    assert len(ids) == 1
    assert fake.notes == [
        {
            "id": ids[0],
            "contact": contact_id,
            "hs_timestamp": "2026-11-24T09:00:00.000Z",
            "hs_note_body": "Customer: hello",
            "hs_lastmodifieddate": "2026-11-24T09:00:00.000Z",
        }
    ]
    [back] = client.changed_notes(0)
    assert back.properties["hs_note_body"] == "Customer: hello"
    assert client.note_contacts([back.id]) == {back.id: [contact_id]}


def test_failures_are_classed_for_retrying() -> None:
    fake = FakeHubSpot(lambda: NOW)
    client = HubSpotClient(TOKEN, transport=fake.transport())
    fake.failures = [429]
    with pytest.raises(CrmError) as busy:
        client.changed_contacts(0, [])
    assert busy.value.transient and busy.value.retry_after == 10
    fake.failures = [503]
    with pytest.raises(CrmError) as down:
        client.changed_contacts(0, [])
    assert down.value.transient
    with pytest.raises(CrmError) as refused:
        client.update_contacts([{"id": "999", "properties": {"firstname": "X"}}])
    assert not refused.value.transient and "not found" in str(refused.value)
    wrong = HubSpotClient("pat-na1-wrong-token-wrong-token", transport=fake.transport())
    with pytest.raises(CrmError) as denied:
        wrong.changed_contacts(0, [])
    assert denied.value.status == 401 and not denied.value.transient
