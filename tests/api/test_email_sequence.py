"""The first seed document's nurture series, end to end on a virtual clock against a real SMTP
server: an immediate e-mail, another a day later, and two days after that a branch on whether
the first was opened — opens, clicks and unsubscribes feeding back into the flow and its
statistics (issue #7's "done when")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.test_email_api import BROWSER, add_contact, add_sender, dispatch
from tests.api.test_sequences_api import run_worker
from tests.conftest import Tenant
from tests.smtp_sink import Received, SinkHandler, smtp_sink
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock

API = "/api/v1"


def email(step: str, subject: str, body: str, after: str | None = None) -> dict[str, Any]:
    found = {
        "id": step,
        "type": "send_email",
        "purpose": "utility",  # a series of lessons; a promotion would meet P4's weekly cap
        "subject": subject,
        "body": body,
    }
    if after:
        found["next"] = after
    return found


NURTURE: dict[str, Any] = {
    "name": "Tea lessons",
    "settings": {"reentry": {"mode": "always"}},
    "steps": [
        email(
            "welcome",
            "{{ contact.first_name }}，歡迎來到茶行",
            '<p>Lesson 1: <a href="https://teahouse.example/lesson-1">brewing oolong</a></p>',
            "day1",
        ),
        {"id": "day1", "type": "wait", "duration": "1d", "next": "lesson2"},
        email("lesson2", "Lesson 2", "<p>Water temperature matters.</p>", "day3"),
        {"id": "day3", "type": "wait", "duration": "2d", "next": "opened"},
        {
            "id": "opened",
            "type": "condition",
            "if": {"opened": "welcome", "human": True},
            "yes": "offer",
            "no": "again",
        },
        email(
            "offer",
            "A tasting for you",
            '<p><a href="https://teahouse.example/tasting">Book a tasting</a></p>',
        ),
        email("again", "In case you missed lesson 1", "<p>Lesson 1, once more.</p>"),
    ],
}


@pytest.fixture
def sink() -> Iterator[tuple[int, SinkHandler]]:
    with smtp_sink() as (controller, handler):
        yield controller.port, handler


def mails_to(handler: SinkHandler, address: str) -> list[Received]:
    return [m for m in handler.received if m.recipients == [address]]


def tracking(mail: Received, kind: str) -> str:
    found = re.search(rf'"(http://[^"]+/e/{kind}/[^"]+)"', mail.body("html"))
    assert found is not None, f"no /e/{kind}/ link"
    return urlsplit(found.group(1)).path


def test_a_nurture_series_branches_on_human_opens_and_counts_opens_and_clicks(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    clock: VirtualClock,
    sink: tuple[int, SinkHandler],
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    reader = add_contact(client, tenant, "reader@example.org", name="林怡君")
    skimmer = add_contact(client, tenant, "skimmer@example.org", name="陳志明")
    sequence = client.post(
        f"{API}/sequences",
        json={"definition": NURTURE, "status": "active"},
        headers=tenant.headers(),
    ).json()
    client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [reader, skimmer]},
        headers=tenant.headers(),
    )

    # Day 0: the welcome e-mail goes at once.
    run_worker(tidings)
    assert dispatch(tidings) == 2
    handler.wait_for(2)
    (welcome_reader,) = mails_to(handler, "reader@example.org")
    (welcome_skimmer,) = mails_to(handler, "skimmer@example.org")
    assert welcome_reader.message["Subject"] == "怡君，歡迎來到茶行"
    # The skimmer's mail gateway fetches the pixel on arrival; the reader opens it later.
    client.get(tracking(welcome_skimmer, "o"), headers={"User-Agent": "Proofpoint URL Defense"})
    clock.advance(timedelta(hours=2))
    assert client.get(tracking(welcome_reader, "o"), headers={"User-Agent": BROWSER}).is_success
    lesson = client.get(
        tracking(welcome_reader, "c"), headers={"User-Agent": BROWSER}, follow_redirects=False
    )
    assert lesson.headers["location"] == "https://teahouse.example/lesson-1"

    # Day 1: lesson 2 for both.
    clock.advance(timedelta(days=1))
    run_worker(tidings)
    dispatch(tidings)
    handler.wait_for(4)
    assert [m.message["Subject"] for m in mails_to(handler, "reader@example.org")][-1] == (
        "Lesson 2"
    )

    # Day 3: the branch. Only the reader opened the welcome as a person.
    clock.advance(timedelta(days=2))
    run_worker(tidings)
    dispatch(tidings)
    handler.wait_for(6)
    assert mails_to(handler, "reader@example.org")[-1].message["Subject"] == "A tasting for you"
    skimmer_last = mails_to(handler, "skimmer@example.org")[-1]
    assert skimmer_last.message["Subject"] == "In case you missed lesson 1"

    # The skimmer unsubscribes from the last e-mail (the mail client's one-click button).
    unsubscribe = urlsplit(skimmer_last.message["List-Unsubscribe"].strip()[1:-1]).path
    assert client.post(unsubscribe, content=b"List-Unsubscribe=One-Click").is_success

    statistics = client.get(
        f"{API}/sequences/{sequence['id']}/statistics", headers=tenant.headers()
    ).json()
    steps = statistics
    assert steps["welcome"]["sent"] == 2
    assert steps["welcome"]["read"] == 2  # every open counts here; the branch asked for people
    assert steps["welcome"]["clicked"] == 1
    assert steps["lesson2"]["sent"] == 2
    assert steps["offer"]["entered"] == 1 and steps["again"]["entered"] == 1

    # A second enrollment of the skimmer, later, sends no e-mail any more (P5).
    clock.advance(timedelta(minutes=5))
    again = client.post(
        f"{API}/sequences/{sequence['id']}/enrollments",
        json={"contact_ids": [skimmer]},
        headers=tenant.headers(),
    ).json()
    assert again["enrolled"] == [skimmer]
    run_worker(tidings)
    after = client.get(
        f"{API}/sequences/{sequence['id']}/statistics", headers=tenant.headers()
    ).json()
    assert after["welcome"]["entered"] == 3 and after["welcome"]["sent"] == 2
    assert dispatch(tidings) == 0
    assert len(mails_to(handler, "skimmer@example.org")) == 3
