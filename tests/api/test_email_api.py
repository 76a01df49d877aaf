"""The e-mail channel end to end against a real SMTP server on loopback (aiosmtpd): what
arrives (headers, both bodies, tracking, unsubscribe), what comes back (opens, clicks,
unsubscribes), and what the server refuses (retries, bounces)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Tenant, make_tenant
from tests.smtp_sink import SinkHandler, smtp_sink
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.messaging.email_dispatch import EmailDispatcher
from tidings.workspaces import service as workspaces

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5"


@pytest.fixture
def sink() -> Iterator[tuple[int, SinkHandler]]:
    with smtp_sink() as (controller, handler):
        yield controller.port, handler


def add_sender(client: TestClient, tenant: Tenant, port: int, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/email/senders",
        json={
            "name": "newsletter",
            "from_name": "茶行 Tea House",
            "from_address": "news@teahouse.example",
            "reply_to": "hello@teahouse.example",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            **extra,
        },
        headers=tenant.headers(),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def add_contact(
    client: TestClient, tenant: Tenant, email: str, name: str = "林怡君", first: str = ""
) -> int:
    response = client.post(
        "/api/v1/contacts",
        json={"name": name, "first_name": first or name[-2:], "email": email},
        headers=tenant.headers(),
    )
    assert response.status_code == 201, response.text
    contact_id: int = response.json()["id"]
    return contact_id


def send(client: TestClient, tenant: Tenant, contact_id: int, **extra: Any) -> dict[str, Any]:
    body = {
        "contact_id": contact_id,
        "subject": "{{ contact.first_name }}，冬季新茶到了",
        "html": (
            "<html><body><p>Hi {{ contact.first_name }},</p>"
            '<p>Our <a href="https://teahouse.example/winter?utm=mail&amp;x=1">winter teas</a>'
            ' and <a href="mailto:hello@teahouse.example">write to us</a>.</p></body></html>'
        ),
        **extra,
    }
    response = client.post("/api/v1/email/messages", json=body, headers=tenant.headers())
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


def dispatch(tidings: Tidings) -> int:
    dispatcher = EmailDispatcher(
        box=tidings.secret_box,
        pool=tidings.smtp,
        secret_key=tidings.settings.secret_key.get_secret_value(),
        public_url=tidings.public_base_url,
    )
    try:
        return dispatcher.run_pass(tidings.db, tidings.clock, 100)
    finally:
        dispatcher.close()


def events(tidings: Tidings, contact_id: int, event_type: str) -> list[dict[str, Any]]:
    import json

    with tidings.db.reading() as session:
        rows = session.execute(
            text(
                "SELECT properties FROM contact_events WHERE contact_id = :c AND event_type = :t "
                "ORDER BY id"
            ),
            {"c": contact_id, "t": event_type},
        ).all()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_an_email_arrives_with_both_bodies_tracked_links_and_one_click_unsubscribe_headers(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "Yijun.Lin@Example.org", first="<b>怡君</b>")
    queued = send(client, tenant, contact_id)
    assert queued["channel"] == "email" and queued["status"] == "queued"
    assert queued["conversation_id"] is None and queued["sender_id"] is not None

    assert dispatch(tidings) == 1
    (mail,) = handler.wait_for(1)
    message = mail.message
    assert mail.recipients == ["yijun.lin@example.org"]
    assert mail.sender == "news@teahouse.example"
    assert message["From"] == "茶行 Tea House <news@teahouse.example>"
    assert message["Reply-To"] == "hello@teahouse.example"
    assert message["Subject"] == "<b>怡君</b>，冬季新茶到了"  # plain text: nothing escaped
    unsubscribe = message["List-Unsubscribe"].strip()  # long: folded onto its own line
    assert re.fullmatch(r"<http://127\.0\.0\.1:8000/e/u/[A-Za-z0-9_-]+>", unsubscribe)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    html = mail.body("html")
    assert "Hi &lt;b&gt;怡君&lt;/b&gt;," in html  # the name is escaped in HTML
    assert "https://teahouse.example/winter" not in html  # the link is tracked …
    clicks = re.findall(r'href="(http://127\.0\.0\.1:8000/e/c/[^"]+)"', html)
    assert len(clicks) == 1
    assert 'href="mailto:hello@teahouse.example"' in html  # … but not mailto
    assert re.search(r'<img src="http://127\.0\.0\.1:8000/e/o/[A-Za-z0-9_-]+\.gif"', html)
    assert unsubscribe[1:-1] in html  # the visible link
    plain = mail.body("plain")
    assert "winter teas" in plain and clicks[0] in plain and unsubscribe[1:-1] in plain

    sent = client.get(f"/api/v1/email/messages/{queued['id']}", headers=tenant.headers()).json()
    assert sent["status"] == "sent" and sent["sent_at"] is not None
    assert sent["provider_message_id"] == message["Message-ID"]


def test_opens_and_clicks_are_recorded_with_machine_flags_and_a_tampered_token_records_nothing(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    clock: VirtualClock,
    sink: tuple[int, SinkHandler],
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "reader@example.org")
    queued = send(client, tenant, contact_id)
    dispatch(tidings)
    html = handler.wait_for(1)[0].body("html")
    pixel = path_of(re.search(r'<img src="([^"]+)"', html).group(1))  # type: ignore[union-attr]
    link = path_of(re.search(r'href="([^"]+/e/c/[^"]+)"', html).group(1))  # type: ignore[union-attr]

    # A security gateway fetches everything the moment the message arrives.
    gateway = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}
    assert client.head(pixel, headers=gateway).status_code == 200
    scanned = client.get(link, headers=gateway, follow_redirects=False)
    assert scanned.status_code == 302
    # The reader opens it a minute later and clicks.
    clock.advance(timedelta(minutes=1))
    opened = client.get(pixel, headers={"User-Agent": BROWSER})
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert "no-store" in opened.headers["cache-control"]
    clicked = client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://teahouse.example/winter?utm=mail&x=1"

    opens = events(tidings, contact_id, "email.opened")
    assert [o["machine"] for o in opens] == [True, False]
    assert opens[0]["machine_reason"] == "HEAD request" and opens[0]["method"] == "HEAD"
    assert opens[1]["message_id"] == queued["id"]
    links = events(tidings, contact_id, "link.clicked")
    assert [c["machine"] for c in links] == [True, False]
    assert links[0]["machine_reason"].startswith("scanner agent")
    assert links[1]["url"] == "https://teahouse.example/winter?utm=mail&x=1"
    message = client.get(f"/api/v1/email/messages/{queued['id']}", headers=tenant.headers())
    assert message.json()["status"] == "read" and message.json()["read_at"] is not None

    token = pixel.rsplit("/", 1)[1].removesuffix(".gif")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path in (f"/e/o/{tampered}.gif", link[:-3] + "abc", "/e/u/" + tampered, "/e/c/x"):
        assert client.get(path, headers={"User-Agent": BROWSER}).status_code == 404
    # An open token does not work as a click or unsubscribe token.
    assert client.get(f"/e/c/{token}").status_code == 404
    assert client.post(f"/e/u/{token}").status_code == 404
    assert len(events(tidings, contact_id, "email.opened")) == 2
    assert len(events(tidings, contact_id, "link.clicked")) == 2


def test_with_tracking_turned_off_links_stay_as_written_and_nothing_is_recorded(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        workspaces.update_workspace(
            session,
            workspace=workspace,
            changes={"policy": {"email_tracking": False}},
            now=tidings.clock.now(),
        )
    add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "private@example.org")
    send(client, tenant, contact_id)
    dispatch(tidings)
    mail = handler.wait_for(1)[0]
    html = mail.body("html")
    assert 'href="https://teahouse.example/winter?utm=mail&amp;x=1"' in html
    assert "/e/o/" not in html and "/e/c/" not in html
    assert "/e/u/" in html and mail.message["List-Unsubscribe"]  # unsubscribing always works


def test_unsubscribing_takes_a_post_and_ends_every_waiting_email(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "leaving@example.org")
    send(client, tenant, contact_id)
    dispatch(tidings)
    unsubscribe = path_of(handler.wait_for(1)[0].message["List-Unsubscribe"].strip()[1:-1])
    waiting = send(client, tenant, contact_id, subject="second", idempotency_key="second")
    assert waiting["status"] == "deferred"  # P4: one promotion a week, across channels

    page = client.get(unsubscribe)  # what a link scanner does: nothing changes
    assert page.status_code == 200 and 'method="post"' in page.text
    assert events(tidings, contact_id, "email.unsubscribed") == []
    one_click = client.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert [e["how"] for e in events(tidings, contact_id, "email.unsubscribed")] == ["one-click"]
    contact = client.get(f"/api/v1/contacts/{contact_id}", headers=tenant.headers()).json()
    consents = {c["purpose"]: c["status"] for c in contact["consents"] if c["channel"] == "email"}
    assert consents == {"marketing": "opted_out", "transactional": "opted_out"}
    ended = client.get(f"/api/v1/email/messages/{waiting['id']}", headers=tenant.headers())
    assert ended.json()["status"] == "skipped" and "unsubscribed" in ended.json()["status_reason"]
    later = send(client, tenant, contact_id, subject="third", idempotency_key="third")
    assert later["status"] == "skipped" and later["status_reason"].startswith("P5")
    assert dispatch(tidings) == 0


def test_a_temporary_refusal_is_retried_and_a_permanent_one_bounces_the_address(
    client: TestClient,
    tidings: Tidings,
    tenant: Tenant,
    clock: VirtualClock,
    sink: tuple[int, SinkHandler],
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    busy = add_contact(client, tenant, "busy@example.org")
    gone = add_contact(client, tenant, "gone@example.org", name="陳志明")
    handler.refuse["busy@example.org"] = "once:451 4.2.0 mailbox busy, try later"
    handler.refuse["gone@example.org"] = "550 5.1.1 no such user here"
    first = send(client, tenant, busy, purpose="utility")
    second = send(client, tenant, gone, purpose="utility")
    dispatch(tidings)

    retried = client.get(f"/api/v1/email/messages/{first['id']}", headers=tenant.headers()).json()
    assert retried["status"] == "queued" and retried["error_code"] == 451
    failed = client.get(f"/api/v1/email/messages/{second['id']}", headers=tenant.headers()).json()
    assert failed["status"] == "failed" and failed["error_code"] == 550
    assert "5.1.1 no such user here" in failed["status_reason"]
    bounced = client.get("/api/v1/email/suppressions", headers=tenant.headers()).json()
    assert [(b["address"], b["smtp_code"]) for b in bounced] == [("gone@example.org", 550)]

    clock.advance(timedelta(minutes=5))
    dispatch(tidings)
    assert handler.wait_for(1)[0].recipients == ["busy@example.org"]
    done = client.get(f"/api/v1/email/messages/{first['id']}", headers=tenant.headers()).json()
    assert done["status"] == "sent" and done["attempts"] == 2
    again = send(client, tenant, gone, subject="again", idempotency_key="again")
    assert again["status"] == "skipped" and "undeliverable" in again["status_reason"]

    removed = client.delete("/api/v1/email/suppressions/gone@example.org", headers=tenant.headers())
    assert removed.status_code == 204
    assert send(client, tenant, gone, subject="3rd", idempotency_key="3")["status"] == "queued"


def test_a_dkim_signature_verifies_against_the_published_key(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sender = add_sender(
        client,
        tenant,
        port,
        dkim_domain="teahouse.example",
        dkim_selector="mail2026",
        dkim_private_key=pem,
    )
    assert sender["has_dkim_key"] is True and "dkim_private_key" not in sender
    send(client, tenant, add_contact(client, tenant, "signed@example.org"))
    dispatch(tidings)
    data = handler.wait_for(1)[0].data
    assert data.startswith(b"DKIM-Signature:")
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.teahouse.example."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace("冬季".encode(), "夏季".encode()) + b"x", dnsfunc=dns)


def test_bad_input_is_refused_with_the_field_named(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, _ = sink
    headers = tenant.headers()

    def refused(path: str, body: dict[str, Any]) -> tuple[int, str | None]:
        response = client.post(path, json=body, headers=headers)
        return response.status_code, response.json()["error"]["field"]

    base = {
        "name": "x",
        "from_name": "Shop",
        "from_address": "a@shop.example",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
    }
    assert refused("/api/v1/email/senders", {**base, "smtp_security": "ssl3"}) == (
        422,
        "smtp_security",
    )
    assert refused("/api/v1/email/senders", {**base, "from_address": "not-an-address"})[1] == (
        "from_address"
    )
    assert refused("/api/v1/email/senders", {**base, "smtp_username": "me"}) == (
        422,
        "smtp_password",
    )
    assert refused("/api/v1/email/senders", {**base, "dkim_domain": "shop.example"}) == (
        422,
        "dkim_selector",
    )
    contact_id = add_contact(client, tenant, "someone@example.org")
    first = {"contact_id": contact_id, "subject": "hi", "html": "x"}
    assert refused("/api/v1/email/messages", first) == (422, None)  # no sender yet
    add_sender(client, tenant, port)
    assert refused("/api/v1/email/senders", {**base, "name": "newsletter"}) == (409, "name")
    template = {"name": "welcome", "subject": "Hi", "html": "<p>{% if %}</p>"}
    assert refused("/api/v1/email/templates", template) == (422, "html")
    assert refused("/api/v1/email/messages", {"contact_id": contact_id, "subject": "hi"}) == (
        422,
        "html",
    )
    assert refused("/api/v1/email/messages", {"contact_id": contact_id, "template": "nope"}) == (
        404,
        "template",
    )
    with tidings.db.reading() as session:
        stored = session.execute(text("SELECT count(*) FROM messages")).scalar()
    assert stored == 0


def test_templates_preview_for_a_contact_and_send_by_name(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, handler = sink
    add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "tea@example.org")
    created = client.post(
        "/api/v1/email/templates",
        json={
            "name": "welcome",
            "subject": "歡迎 {{ contact.first_name }}",
            "html": "<h1>{{ workspace.name }}</h1><p>Dear {{ contact.first_name }}</p>"
            '<p><a href="{{ unsubscribe_url }}">leave</a></p>',
        },
        headers=tenant.headers(),
    )
    assert created.status_code == 201, created.text
    preview = client.post(
        f"/api/v1/email/templates/{created.json()['id']}/preview",
        json={"contact_id": contact_id},
        headers=tenant.headers(),
    ).json()
    assert preview["subject"] == "歡迎 怡君"
    assert "Shop taipei-shop" in preview["text"] and "Dear 怡君" in preview["text"]
    send(client, tenant, contact_id, template="welcome", subject=None, html=None)
    dispatch(tidings)
    mail = handler.wait_for(1)[0]
    assert mail.message["Subject"] == "歡迎 怡君"
    html = mail.body("html")
    # The author placed the unsubscribe link: it is filled in, and no footer is added.
    assert html.count("/e/u/") == 1 and ">leave</a>" in html


def test_another_workspace_sees_none_of_it(
    client: TestClient, tidings: Tidings, tenant: Tenant, sink: tuple[int, SinkHandler]
) -> None:
    port, _ = sink
    sender = add_sender(client, tenant, port)
    contact_id = add_contact(client, tenant, "mine@example.org")
    message = send(client, tenant, contact_id)
    other = make_tenant(tidings, "other-shop").headers()
    assert client.get(f"/api/v1/email/senders/{sender['id']}", headers=other).status_code == 404
    assert client.get(f"/api/v1/email/messages/{message['id']}", headers=other).status_code == 404
    assert client.get("/api/v1/email/senders", headers=other).json() == []
    assert (
        client.post(
            "/api/v1/email/messages",
            json={"contact_id": contact_id, "subject": "x", "html": "y"},
            headers=other,
        ).status_code
        == 404
    )
