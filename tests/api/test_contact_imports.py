"""CSV imports in the background (X5, Trust I): the file is answered at once (202) and read by
the worker batch by batch; the progress is committed with the rows, so a worker that dies
mid-file is followed by one that resumes at the next row — nothing skipped, nothing doubled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Tenant, make_tenant
from tidings.bootstrap import Tidings
from tidings.contacts.imports import LEASE, ContactImportRunner
from tidings.kernel.clock import VirtualClock

API = "/api/v1"


def csv_body(rows: int, *, bad_every: int = 0) -> bytes:
    lines = ["phone,name,tags"]
    for i in range(rows):
        phone = "not a phone" if bad_every and i % bad_every == bad_every - 1 else f"+6681{i:07d}"
        lines.append(f'{phone},"Customer {i}, BKK",vip')
    return ("\n".join(lines) + "\n").encode()


def send(client: TestClient, tenant: Tenant, body: bytes, **params: Any) -> Any:
    return client.post(
        f"{API}/contacts/imports",
        content=body,
        params=params,
        headers={**tenant.headers(), "content-type": "text/csv"},
    )


def contacts_stored(tidings: Tidings) -> int:
    with tidings.db.reading() as session:
        return int(session.execute(text("SELECT count(*) FROM contacts")).scalar_one())


def test_a_file_is_answered_at_once_and_imported_by_the_worker(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    answer = send(client, tenant, csv_body(5000, bad_every=1000), name="november.csv")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["status"] == "queued" and job["rows"] == 0 and job["file_name"] == "november.csv"
    assert answer.headers["location"] == f"/api/v1/contacts/imports/{job['id']}"
    assert contacts_stored(tidings) == 0  # nothing was imported inside the request

    runner = ContactImportRunner(batch_rows=1000, pass_seconds=0.0)  # one batch per pass
    assert runner.run_pass(tidings.db, tidings.clock, 500) >= 500  # more waits
    midway = client.get(answer.headers["location"], headers=tenant.headers()).json()
    assert midway["status"] == "running" and midway["rows"] == 1000
    while runner.run_pass(tidings.db, tidings.clock, 500) >= 500:
        pass
    done = client.get(answer.headers["location"], headers=tenant.headers()).json()
    assert done["status"] == "done", done
    assert (done["rows"], done["created"], done["failed"]) == (5000, 4995, 5)
    assert [p["line"] for p in done["problems"]] == [1001, 2001, 3001, 4001, 5001]
    assert {p["column"] for p in done["problems"]} == {"phone"}
    assert done["finished_at"] is not None and contacts_stored(tidings) == 4995
    assert runner.run_pass(tidings.db, tidings.clock, 500) == 0  # nothing more to do

    # Sent again: every row is found unchanged, nothing is doubled.
    again = send(client, tenant, csv_body(5000, bad_every=1000)).json()
    while runner.run_pass(tidings.db, tidings.clock, 500):
        pass
    second = client.get(f"{API}/contacts/imports/{again['id']}", headers=tenant.headers()).json()
    assert (second["unchanged"], second["created"], second["failed"]) == (4995, 0, 5)
    listed = client.get(f"{API}/contacts/imports", headers=tenant.headers()).json()["items"]
    assert [i["id"] for i in listed] == [again["id"], job["id"]]


def test_a_worker_that_dies_mid_file_is_followed_by_one_that_resumes_at_the_next_row(
    client: TestClient, tidings: Tidings, tenant: Tenant, clock: VirtualClock
) -> None:
    job = send(client, tenant, csv_body(4000)).json()
    first = ContactImportRunner(batch_rows=1000, pass_seconds=0.0)
    first.run_pass(tidings.db, clock, 500)
    first.run_pass(tidings.db, clock, 500)  # 2,000 rows in, then the worker is killed
    second = ContactImportRunner(batch_rows=1000, pass_seconds=0.0)
    assert second.run_pass(tidings.db, clock, 500) == 0  # the dead worker's lease still runs
    clock.advance(LEASE + timedelta(seconds=1))
    while second.run_pass(tidings.db, clock, 500):
        pass
    done = client.get(f"{API}/contacts/imports/{job['id']}", headers=tenant.headers()).json()
    assert (done["status"], done["rows"], done["created"]) == ("done", 4000, 4000)
    assert contacts_stored(tidings) == 4000

    # A worker that comes back after its import was taken over writes no progress of its
    # own: its batch rolls back, and the rows it read are not counted twice.
    job = send(client, tenant, csv_body(3000).replace(b"+6681", b"+6682")).json()
    slow = ContactImportRunner(batch_rows=1000, pass_seconds=0.0)
    with tidings.db.transaction() as session:
        stalled = slow._claim(session, clock.now())  # it claims the file, then stalls
    assert stalled is not None
    clock.advance(LEASE + timedelta(seconds=1))
    quick = ContactImportRunner(batch_rows=1000, pass_seconds=0.0)
    quick.run_pass(tidings.db, clock, 500)  # takes it over: rows 1-1,000
    assert slow._work(tidings.db, clock, stalled, 500) == 0  # its batch is rolled back
    while quick.run_pass(tidings.db, clock, 500):
        pass
    done = client.get(f"{API}/contacts/imports/{job['id']}", headers=tenant.headers()).json()
    assert (done["status"], done["rows"], done["created"]) == ("done", 3000, 3000)
    assert done["unchanged"] == 0  # the stalled worker's rows were not counted a second time


def test_a_file_that_breaks_mid_way_fails_with_the_line_and_keeps_what_went_in(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    rows = csv_body(3000).decode().splitlines()
    rows[2500] = '+66800000000,"' + "x" * 200_000 + '",vip'  # past the CSV field limit
    job = send(client, tenant, ("\n".join(rows) + "\n").encode()).json()
    runner = ContactImportRunner(batch_rows=1000)
    while runner.run_pass(tidings.db, tidings.clock, 500):
        pass
    failed = client.get(f"{API}/contacts/imports/{job['id']}", headers=tenant.headers()).json()
    assert failed["status"] == "failed" and failed["error_field"] == "line 2501", failed
    assert "field larger than field limit" in failed["error"]
    assert failed["rows"] == 2000 and contacts_stored(tidings) == 2000


def test_a_file_that_cannot_be_read_is_refused_at_once_naming_the_problem(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    not_utf8 = send(client, tenant, "phone,name\n+66812345678,Sm\xf6rg\n".encode("latin-1"))
    assert not_utf8.status_code == 422 and not_utf8.json()["error"]["field"] == "body"
    empty = send(client, tenant, b"")
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "line 1"
    twice = send(client, tenant, b"phone,phone\n+66812345678,+66812345679\n")
    assert twice.status_code == 422 and "twice" in twice.json()["error"]["message"]
    too_long = send(client, tenant, b"phone\n+66812345678\n", name="x" * 201)
    assert too_long.status_code == 422
    assert client.get(f"{API}/contacts/imports", headers=tenant.headers()).json()["items"] == []


def test_an_import_belongs_to_its_workspace(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    job = send(client, tenant, csv_body(10)).json()
    other = make_tenant(tidings, "other-shop")
    unseen = client.get(f"{API}/contacts/imports/{job['id']}", headers=other.headers())
    assert unseen.status_code == 404
    assert client.get(f"{API}/contacts/imports", headers=other.headers()).json()["items"] == []
    beyond = client.get(f"{API}/contacts/imports/{2**63}", headers=tenant.headers())
    assert beyond.status_code == 404 and beyond.json()["error"]["code"] == "not_found"
