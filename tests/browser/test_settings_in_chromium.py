"""Settings in a real browser: an owner syncs the number's templates, adds an agent and puts
them in a team, creates an API key (shown once) and revokes it, adds a quick reply the inbox
then offers, and changes a policy figure — a refusal names its field and changes nothing."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, add_marketer, shot, sign_in
from tests.conftest import Tenant
from tests.live import Stack
from tidings.bootstrap import Tidings


def test_an_admin_keeps_the_workspace_in_order(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    sign_in(page, stack.app_url, tenant, add_marketer(tidings, tenant), PASSWORD)
    page.wait_for_url("**/app/inbox")
    page.click("nav.sections >> text=Settings")
    page.wait_for_url("**/app/settings")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    # The number is there; its templates come from WhatsApp on demand.
    number = page.locator("#numbers tr").first
    expect(number).to_contain_text("active")
    number.locator("button", has_text="Sync templates").click()
    expect(page.locator("#templates tr[data-template='order_update:en']")).to_contain_text(
        "Hi {{1}}, your order {{2}} is on its way."
    )

    # A new agent, then a team with them in it.
    agents = page.locator("#agent-form")
    agents.locator("[name=name]").fill("Nok")
    agents.locator("[name=email]").fill("nok@teahouse.example")
    agents.locator("[name=password]").fill("a long password for nok")
    agents.locator("button[type=submit]").click()
    expect(page.locator("#agents tr[data-agent='nok@teahouse.example']")).to_contain_text("Nok")
    page.fill("#team-form [name=name]", "Bangkok")
    page.click("#team-form button")
    team = page.locator("#teams .team[data-team='Bangkok']")
    team.locator("select").select_option(label="Nok")
    expect(team.locator(".members")).to_contain_text("Nok")

    # An API key is shown once, then only its prefix; revoked, it says so.
    page.fill("#key-form [name=name]", "Shop website")
    page.click("#key-form button")
    expect(page.locator("#new-key")).to_contain_text("shown this once")
    key = page.locator("#keys tr[data-key='Shop website']")
    key.locator("button", has_text="Revoke").click()
    expect(key).to_contain_text("revoked")

    # A quick reply, offered in the inbox afterwards.
    replies = page.locator("#reply-form")
    replies.locator("[name=shortcut]").fill("hours")
    replies.locator("[name=title]").fill("Opening hours")
    replies.locator("[name=body]").fill("We are open 10:00-21:00, {{ contact.first_name }}.")
    replies.locator("button[type=submit]").click()
    expect(page.locator("#replies tr[data-shortcut='hours']")).to_contain_text("Opening hours")

    # The policy: a figure out of range is refused by name; a good one is kept and marked.
    weekly = page.locator("#policy tr[data-key='promotional_per_week'] input")
    expect(weekly).to_have_value("1")
    quota = page.locator("#policy tr[data-key='daily_quota_per_number'] input")
    quota.fill("0")
    page.click("#policy-form button[type=submit]")
    expect(page.locator("#settings-error")).to_contain_text("policy.daily_quota_per_number")
    quota.fill("5000")
    page.click("#policy-form button[type=submit]")
    changed = page.locator("#policy tr[data-key='daily_quota_per_number']")
    expect(changed.locator(".badge")).to_have_text("changed")
    expect(changed.locator("input")).to_have_value("5000")
    # A yes-or-no setting is a tick box: replies no longer take unassigned conversations.
    assigns = page.locator("#policy tr[data-key='reply_assigns_agent'] input")
    expect(assigns).to_be_checked()
    assigns.uncheck()
    page.click("#policy-form button[type=submit]")
    expect(page.locator("#policy tr[data-key='reply_assigns_agent'] .badge")).to_have_text(
        "changed"
    )
    page.locator("#settings").evaluate("main => main.scrollTo(0, 0)")
    shot(page, "settings", tmp_path)
    policy = stack.api.get("/api/v1/workspace").json()["policy"]
    assert (policy["daily_quota_per_number"], policy["reply_assigns_agent"]) == (5000, False)


def test_on_a_phone_by_keyboard_an_admin_settles_uncertain_messages_and_replays_updates(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    """What the API lists (#22) an admin handles in the web app too, in their language, on a
    phone, with the keyboard alone: nothing to type as JSON."""
    from sqlalchemy import select

    from tidings.channels.orm import WhatsAppInboundEvent
    from tidings.messaging.orm import Message

    contact = stack.api.post(
        "/api/v1/contacts", json={"name": "Mali", "email": "mali@teahouse.example"}
    ).json()
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        for text in ("Your parcel is on its way", "Your parcel has arrived"):
            session.add(
                Message(
                    workspace_id=tenant.workspace_id,
                    contact_id=contact["id"],
                    channel="email",
                    direction="out",
                    kind="text",
                    text=text,
                    content={},
                    status="uncertain",
                    recipient="mali@teahouse.example",
                    wire_at=now,
                    attempts=1,
                    status_reason="uncertain: the worker stopped mid-send; not resent",
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            WhatsAppInboundEvent(
                workspace_id=tenant.workspace_id,
                number_id=stack.number_id,
                event_key="message:wamid.odd",
                kind="message",
                payload={"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
                received_at=now,
                quarantined_at=now,
                attempts=1,
                last_error="not understood: messages[].from: a sender id should be text",
            )
        )
    page = browser.new_page(locale="th-TH", viewport={"width": 390, "height": 844})
    sign_in(page, stack.app_url, tenant, add_marketer(tidings, tenant), PASSWORD)
    page.wait_for_url("**/app/inbox")
    page.goto(f"{stack.app_url}/app/settings#s-uncertain")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    section = page.locator("#s-uncertain")
    expect(section.locator("h2")).to_have_text("ข้อความที่ต้องตรวจสอบ")
    expect(section.locator("tbody tr")).to_have_count(2)

    # Keyboard only: tick the first line, then "mark as sent".
    first = section.locator("tbody tr", has_text="on its way").locator("input")
    first.focus()
    page.keyboard.press("Space")
    expect(first).to_be_checked()
    page.locator("#uncertain-sent").focus()
    page.keyboard.press("Enter")
    expect(section.locator("tbody tr")).to_have_count(1)
    expect(section.locator("tbody")).to_contain_text("has arrived")

    # The quarantined update, its reason and the JSON as it came; processed again.
    held = page.locator("#s-quarantine tbody tr").first
    expect(held).to_contain_text("messages[].from")
    expect(held).to_contain_text("ข้อความจากลูกค้า")
    page.locator("#quarantine-every").focus()
    page.keyboard.press("Space")
    page.locator("#quarantine-replay").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#s-quarantine tbody")).to_contain_text("ไม่มีรายการที่ต้องตรวจสอบ")

    # Nothing is wider than the phone.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    with tidings.db.reading() as session:
        statuses = sorted(session.scalars(select(Message.status).where(Message.channel == "email")))
    assert statuses == ["sent", "uncertain"]
