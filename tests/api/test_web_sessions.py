"""The web app's session: a signed-in browser reaches the API with its cookie, every change
needs the session's CSRF token, and signing out ends it at once."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tests.live import start_server
from tidings.bootstrap import Tidings
from tidings.kernel.clock import VirtualClock
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

PASSWORD = "a long agent password"


def agent(tidings: Tidings, tenant: Tenant) -> None:
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        assert workspace is not None
        workspaces.create_user(
            session, workspace=workspace, email="mei@teahouse.example", name="Mei",
            role=Role.AGENT, password=PASSWORD, granted_by=Role.OWNER, now=tidings.clock.now(),
        )  # fmt: skip


def sign_in(client: TestClient, tenant: Tenant, password: str = PASSWORD) -> int:
    response = client.post(
        "/app/login",
        data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": password},
        follow_redirects=False,
    )
    return response.status_code


def csrf_of(client: TestClient) -> str:
    page = client.get("/app/inbox").text
    marker = 'name="csrf-token" content="'
    return page.split(marker, 1)[1].split('"', 1)[0]


def test_a_session_reads_and_changes_only_with_its_csrf_token(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    assert client.get("/app/inbox", follow_redirects=False).headers["location"] == "/app/login"
    assert client.get("/app/nowhere", follow_redirects=False).status_code == 404
    assert sign_in(client, tenant, "wrong password!") == 401
    assert "tidings_session" not in client.cookies
    assert sign_in(client, tenant) == 303
    cookie = client.cookies["tidings_session"]
    assert client.get("/api/v1/conversations").status_code == 200

    refused = client.post(
        "/api/v1/quick-replies", json={"shortcut": "hi", "title": "Hi", "body": "Hi"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["field"] == "X-CSRF-Token"
    token = csrf_of(client)
    created = client.post(
        "/api/v1/contacts", json={"name": "Chen Yi-jun"}, headers={"X-CSRF-Token": token}
    )
    assert created.status_code == 201, created.text

    # A cross-site login post is refused; a logout without the token does nothing.
    crossed = client.post(
        "/app/login",
        data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert crossed.status_code == 403
    client.post("/app/logout", data={"csrf": "forged"}, follow_redirects=False)
    client.cookies.set("tidings_session", cookie)
    assert client.get("/api/v1/conversations").status_code == 200
    client.post("/app/logout", data={"csrf": token}, follow_redirects=False)
    client.cookies.set("tidings_session", cookie)  # a stolen copy of the cookie
    assert client.get("/api/v1/conversations").status_code == 401
    assert client.get("/app/stream").status_code == 401


def test_an_api_key_still_wins_over_a_cookie(client: TestClient, tenant: Tenant) -> None:
    client.cookies.set("tidings_session", "not a session")
    assert client.get("/api/v1/conversations", headers=tenant.headers()).status_code == 200
    assert client.get("/api/v1/conversations").status_code == 401


def test_every_page_is_under_a_strict_content_security_policy(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    login = client.get("/app/login")
    assert sign_in(client, tenant) == 303
    for page in (login, client.get("/app/inbox"), client.get("/app/contacts")):
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        assert "<script>" not in page.text  # no inline script for the policy to allow
    api = client.get("/api/v1/conversations")
    assert api.headers["x-content-type-options"] == "nosniff"


def test_wrong_passwords_slow_an_account_down_even_for_the_right_one(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    for _ in range(5):
        assert sign_in(client, tenant, "a wrong password") == 401
    # From the fifth failure on, every try waits — the right password too.
    assert sign_in(client, tenant) == 429
    refused = client.post(
        "/app/login",
        data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": PASSWORD},
        follow_redirects=False,
    )
    assert int(refused.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins" in refused.text
    # Each further failure doubles the wait.
    clock = tidings.clock
    assert isinstance(clock, VirtualClock)
    clock.advance(timedelta(seconds=2))
    assert sign_in(client, tenant, "still wrong") == 401
    clock.advance(timedelta(seconds=1))
    assert sign_in(client, tenant) == 429  # 2 s now, 1 s passed
    clock.advance(timedelta(seconds=2))
    assert sign_in(client, tenant) == 303
    # The account's count is cleared by its owner's success.
    client.cookies.clear()
    assert sign_in(client, tenant, "a slip") == 401
    assert sign_in(client, tenant) == 303
    # Every attempt is on the record an admin reads, newest first.
    record = client.get(
        "/api/v1/audit/sign-ins", params={"limit": 200}, headers=tenant.headers()
    ).json()["items"]
    outcomes = [r["outcome"] for r in reversed(record)]
    assert outcomes == [
        *["failed"] * 5,
        "throttled",  # the right password, refused unchecked
        "throttled",  # the same, answered with Retry-After
        "failed",
        "throttled",
        "signed_in",
        "failed",
        "signed_in",
    ]
    assert {r["email"] for r in record} == {"mei@teahouse.example"}
    assert (
        client.get("/api/v1/audit/sign-ins", headers={**tenant.headers(Role.AGENT)}).status_code
        == 403
    )


def test_one_address_trying_many_accounts_is_slowed_down(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    agent(tidings, tenant)
    for i in range(20):
        answer = client.post(
            "/app/login",
            data={"workspace": tenant.slug, "email": f"guess{i}@teahouse.example", "password": "x"},
            follow_redirects=False,
        )
        assert answer.status_code == 401
    assert sign_in(client, tenant) == 429


def test_the_session_cookie_is_secure_when_the_public_address_is_https(
    tidings: Tidings, tenant: Tenant
) -> None:
    from tidings.api.app import create_app

    agent(tidings, tenant)
    tidings.settings.public_url = "https://crm.teahouse.example"
    with TestClient(create_app(tidings)) as client:
        response = client.post(
            "/app/login",
            data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": PASSWORD},
            follow_redirects=False,
        )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_signing_out_behind_a_proxy_ends_the_session_on_the_server(
    tidings: Tidings, tenant: Tenant
) -> None:
    """The proxy serves https://crm.teahouse.example and reaches this process at another
    address: sign-in and sign-out still work, and signing out ends the session."""
    from tidings.api.app import create_app

    agent(tidings, tenant)
    tidings.settings.public_url = "https://crm.teahouse.example"
    public = {"Origin": "https://crm.teahouse.example"}
    with TestClient(create_app(tidings), base_url="https://internal:8000") as client:
        signed_in = client.post(
            "/app/login",
            data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": PASSWORD},
            headers=public,
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        cookie = client.cookies["tidings_session"]
        client.post(
            "/app/logout", data={"csrf": csrf_of(client)}, headers=public, follow_redirects=False
        )
        client.cookies.set("tidings_session", cookie)  # a copy kept of the cookie
        assert client.get("/api/v1/conversations").status_code == 401


def test_sign_in_attempts_are_forgotten_after_the_retention_period(
    client: TestClient, tidings: Tidings, tenant: Tenant
) -> None:
    from tidings.workspaces.service import prune_sign_in_records

    agent(tidings, tenant)
    clock = tidings.clock
    assert isinstance(clock, VirtualClock)
    assert sign_in(client, tenant, "a wrong password") == 401
    clock.advance(timedelta(days=60))
    client.cookies.clear()
    assert sign_in(client, tenant) == 303

    def kept() -> list[str]:
        items = client.get("/api/v1/audit/sign-ins", headers=tenant.headers()).json()["items"]
        return [r["outcome"] for r in items]

    clock.advance(timedelta(days=31))  # the failure is 91 days old, the sign-in 31
    with tidings.db.transaction() as session:
        assert prune_sign_in_records(session, now=clock.now(), keep_days=90) == 1
    assert kept() == ["signed_in"]
    with tidings.db.transaction() as session:  # nothing more is due
        assert prune_sign_in_records(session, now=clock.now(), keep_days=90) == 0
    # The worker runs it on its own, with the operator's retention period.
    assert any(t.job.name == "audit.prune_sign_ins" for t in tidings.periodic)


def test_stopping_the_server_ends_an_open_live_feed_at_once(
    tidings: Tidings, tenant: Tenant
) -> None:
    """A browser's live feed never ends by itself; a restart or a deploy must not wait on it
    (uvicorn waits for every open response): the feed ends, and the browser reconnects."""
    agent(tidings, tenant)
    server, thread, url = start_server(tidings)
    # A read timeout well under the feed's 15 s keep-alive: a feed left open fails the test.
    with httpx.Client(base_url=url, timeout=5) as browser:
        signed_in = browser.post(
            "/app/login",
            data={"workspace": tenant.slug, "email": "mei@teahouse.example", "password": PASSWORD},
        )
        assert signed_in.status_code == 303
        with browser.stream("GET", "/app/stream") as feed:
            lines = feed.iter_lines()
            assert next(lines) == "retry: 2000"
            server.should_exit = True
            rest = list(lines)
    assert "event: change" in rest  # what it had to say before the end
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_app_has_an_icon_wherever_a_browser_looks_for_it(client: TestClient) -> None:
    page = client.get("/app/login").text
    assert '<link rel="icon" href="/app/static/favicon.svg"' in page
    icon = client.get("/app/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    legacy = client.get("/favicon.ico", follow_redirects=False)
    assert legacy.status_code == 308 and legacy.headers["location"] == "/app/static/favicon.svg"
