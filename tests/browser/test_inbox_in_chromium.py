"""The agents' inbox driven in a real browser (Debian's Chromium through Playwright) against
Tidings served over HTTP, a worker and the WhatsApp simulator: sign in, a customer's message
appears live, a quick reply goes out and its delivered tick comes back — all without
reloading the page."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, add_agent, shot, sign_in
from tests.conftest import Tenant
from tests.live import Stack
from tidings.bootstrap import Tidings


def test_an_agent_signs_in_sees_a_message_arrive_live_and_replies_with_a_quick_reply(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    email = add_agent(tidings, tenant)
    created = stack.api.post(
        "/api/v1/quick-replies",
        json={
            "shortcut": "ship",
            "title": "Shipping time",
            "body": "Hi {{ contact.first_name }}, delivery to Taichung takes 2 days.",
        },
    )
    assert created.status_code == 201, created.text
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 800})

    sign_in(page, stack.app_url, tenant, email, "not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong workspace, e-mail or password.")
    shot(page, "login", tmp_path)
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")

    # A customer writes; the conversation appears without a reload.
    httpx.post(
        f"{stack.simulator.url}/_simulator/customers/886912345678/messages",
        json={"text": "請問寄到台中要幾天？", "name": "Chen Yi-jun"},
    ).raise_for_status()
    conversation = page.locator(".conversation", has_text="Chen Yi-jun")
    expect(conversation).to_be_visible(timeout=20_000)
    expect(conversation.locator(".unread")).to_have_text("1")
    conversation.click()
    expect(page.locator(".message.in .text")).to_have_text("請問寄到台中要幾天？")
    expect(page.locator("#window")).to_have_attribute("data-open", "true")
    expect(page.locator("#window")).to_contain_text("24-hour window open until")
    expect(conversation.locator(".unread")).to_have_count(0)
    # What the customer adds while the agent looks is read at once: no badge counts up.
    httpx.post(
        f"{stack.simulator.url}/_simulator/customers/886912345678/messages",
        json={"text": "我住在西屯區", "name": "Chen Yi-jun"},
    ).raise_for_status()
    expect(page.locator(".message.in .text").last).to_have_text("我住在西屯區", timeout=20_000)

    def unread() -> list[int]:
        found = stack.api.get("/api/v1/conversations").json()["items"]
        return [c["unread_count"] for c in found if c["contact_name"] == "Chen Yi-jun"]

    deadline = time.monotonic() + 15
    while unread() != [0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unread() == [0]
    expect(conversation.locator(".unread")).to_have_count(0)

    # "/" offers the quick replies; Enter takes the first, filled in for this contact.
    page.fill("#reply", "/sh")
    expect(page.locator(".quick-reply")).to_have_count(1)
    page.press("#reply", "Enter")
    expect(page.locator("#reply")).to_have_value("Hi Chen, delivery to Taichung takes 2 days.")
    page.press("#reply", "Enter")
    sent = page.locator(".message.out", has_text="delivery to Taichung")
    expect(sent).to_be_visible(timeout=20_000)
    # The simulator delivers and reads it; the tick follows live.
    expect(sent.locator(".tick")).to_have_attribute("data-status", "read", timeout=20_000)
    shot(page, "inbox", tmp_path)

    # Phone width: one pane at a time, and back to the list.
    page.set_viewport_size({"width": 390, "height": 800})
    expect(page.locator(".conversations")).to_be_hidden()
    page.click("#back")
    expect(page.locator(".conversations")).to_be_visible()

    # Signing out ends the session: the cookie no longer opens the API.
    page.click("text=Sign out")
    page.wait_for_url("**/app/login")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "tidings_session" not in cookies


def test_the_inbox_speaks_thai_and_traditional_chinese(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    email = add_agent(tidings, tenant)
    page = browser.new_page(locale="zh-TW")
    page.goto(f"{stack.app_url}/app/login")
    expect(page.locator("button[type=submit]")).to_have_text("登入")
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    expect(page.locator("[data-filter=mine]")).to_have_text("我的")
    page.click("text=ไทย")
    expect(page.locator("[data-filter=mine]")).to_have_text("ของฉัน")
    expect(page.locator("#live")).to_have_text("สด")


def test_an_agent_finds_a_contact_and_sees_why_a_message_was_not_sent(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    email = add_agent(tidings, tenant)
    created = stack.api.post(
        "/api/v1/contacts",
        json={"name": "Lin Mei", "phone": "+886912000111", "tags": ["vip"]},
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    # A free-form text to someone who never wrote: the sending policy holds it back (P1).
    sent = stack.api.post(
        "/api/v1/messages",
        json={"contact_id": contact_id, "content": {"type": "text", "text": {"body": "Hello"}}},
    )
    assert sent.status_code == 202, sent.text
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 800})
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    page.click("nav.sections >> text=Contacts")
    page.wait_for_url("**/app/contacts")
    page.fill("#search", "Lin")
    page.locator(".contact", has_text="Lin Mei").click()
    expect(page.locator("#contact-name")).to_have_text("Lin Mei")
    expect(page.locator("#profile")).to_contain_text("vip")
    expect(page.locator("#timeline .event[data-type='tag.added']")).to_be_visible()
    # The "why" panel: the message was skipped, and the reason says which rule held it back.
    row = page.locator("#why li.send").first
    expect(row).to_have_attribute("data-outcome", "skipped")
    expect(row.locator(".reason")).to_have_text(
        "P1: the 24-hour window is closed and this is not an approved template"
    )
    expect(page.locator("#profile")).to_contain_text("Lifecycle stage")
    # The tag filter keeps to the contacts with every tag given.
    page.fill("#search", "")
    page.fill("#tag-filter", "vip")
    page.press("#tag-filter", "Enter")
    expect(page.locator(".contact")).to_have_count(1)
    page.fill("#tag-filter", "vip, nobody-has-this")
    page.press("#tag-filter", "Enter")
    expect(page.locator(".contact")).to_have_count(0)
    page.fill("#tag-filter", "")
    page.press("#tag-filter", "Enter")
    page.locator(".contact", has_text="Lin Mei").click()
    shot(page, "contacts", tmp_path)
    page.click("text=ไทย")
    expect(page.locator("nav.sections a[aria-current=page]")).to_have_text("รายชื่อลูกค้า")


def test_an_agent_labels_notes_snoozes_and_sends_a_template_with_its_parameters(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    email = add_agent(tidings, tenant)
    synced = stack.api.post(f"/api/v1/whatsapp-numbers/{stack.number_id}/templates/sync")
    assert synced.status_code == 200, synced.text
    httpx.post(
        f"{stack.simulator.url}/_simulator/customers/886912345679/messages",
        json={"text": "My order?", "name": "Lee Wen"},
    ).raise_for_status()
    team = stack.api.post("/api/v1/teams", json={"name": "Orders"})
    assert team.status_code == 201, team.text
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 800})
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    conversation = page.locator(".conversation", has_text="Lee Wen")
    expect(conversation).to_be_visible(timeout=20_000)
    conversation.click()

    # Handed to the Orders team; the team filter finds it, and only it.
    page.select_option("#assign-to", label="Team: Orders")
    expect(page.locator("#assign-to")).to_have_value(f"team:{team.json()['id']}")
    page.select_option("#team-filter", label="Orders")
    expect(page.locator(".conversation")).to_have_count(1)
    page.select_option("#team-filter", label="Every team")

    # A label: on the thread and in the list; and off again.
    page.fill("#new-label", "order-question")
    page.press("#new-label", "Enter")
    expect(page.locator("#thread-labels .label")).to_have_text("order-question ×")
    expect(conversation.locator(".label")).to_have_text("order-question")
    page.fill("#label-filter", "nothing-like-it")
    page.press("#label-filter", "Enter")
    expect(page.locator(".conversation")).to_have_count(0)
    page.fill("#label-filter", "order-question")
    page.press("#label-filter", "Enter")
    expect(page.locator(".conversation")).to_have_count(1)
    page.fill("#label-filter", "")
    page.press("#label-filter", "Enter")
    page.click("#thread-labels .label button")
    expect(page.locator("#thread-labels .label")).to_have_count(0)

    # A note for the team.
    page.click("#notes summary")
    page.fill("#note-body", "Parcel left Taoyuan yesterday; tracking TW123.")
    page.click("#note-form button")
    expect(page.locator("#note-count")).to_have_text("1")
    expect(page.locator("#note-list .note")).to_contain_text("tracking TW123")

    # A photo with a caption, sent while the window is open; a file WhatsApp would refuse is
    # refused before it goes, naming the field.
    page.fill("#reply", "Your parcel, packed")
    page.set_input_files(
        "#attach",
        files=[
            {"name": "parcel.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff" + bytes(64)}
        ],
    )
    photo = page.locator(".message.out", has_text="Your parcel, packed")
    expect(photo.locator(".tick")).to_have_attribute("data-status", "read", timeout=20_000)
    page.set_input_files(
        "#attach", files=[{"name": "a.gif", "mimeType": "image/gif", "buffer": b"GIF89a"}]
    )
    expect(page.locator("#composer-error")).to_contain_text("file:")

    # A day later the 24-hour window is closed: only a template can go, with its parameters.
    stack.clock.advance(timedelta(hours=25))
    page.reload()
    page.locator(".conversation", has_text="Lee Wen").click()
    expect(page.locator("#window")).to_have_attribute("data-open", "false")
    expect(page.locator("#composer")).to_be_hidden()
    page.select_option("#template-select", label="order_update (en)")
    expect(page.locator("#template-parameters input")).to_have_count(2)
    expect(page.locator(".template-body")).to_have_text("Hi {{1}}, your order {{2}} is on its way.")
    page.fill("[name=parameter-1]", "Wen")
    page.fill("[name=parameter-2]", "A-1024")
    page.click("#template-form button[type=submit]")
    sent = page.locator(".message.out", has_text="order_update")
    expect(sent.locator(".tick")).to_have_attribute("data-status", "read", timeout=20_000)

    # Snoozed for an hour: it says until when.
    page.select_option("#snooze", "hour")
    expect(page.locator("#snoozed")).to_contain_text("Snoozed until")


def test_the_dashboard_shows_when_customers_write_and_how_fast_agents_answer(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    email = add_agent(tidings, tenant)
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    httpx.post(
        f"{stack.simulator.url}/_simulator/customers/886912345670/messages",
        json={"text": "Do you ship to Tainan?", "name": "Ho Ling"},
    ).raise_for_status()
    conversation = page.locator(".conversation", has_text="Ho Ling")
    expect(conversation).to_be_visible(timeout=20_000)
    conversation.click()
    stack.clock.advance(timedelta(minutes=2))
    page.fill("#reply", "Yes, in two days.")
    page.press("#reply", "Enter")
    expect(page.locator("#reply")).to_have_value("")  # taken by the API
    expect(page.locator("#composer-error")).to_be_hidden()
    expect(page.locator(".message.out", has_text="two days")).to_be_visible(timeout=20_000)

    page.click("nav.sections >> text=Dashboard")
    page.wait_for_url("**/app/dashboard")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    # The customer wrote on Monday 14:00-ish in Taipei (the virtual clock's 06:00 UTC).
    busy = page.locator(".heat-cell:not([data-count='0'])")
    expect(busy).to_have_count(1)
    expect(busy).to_have_attribute("data-day", "0")
    expect(busy).to_have_attribute("data-hour", "14")
    mei = page.locator("#responses li", has_text="Mei")
    expect(mei).to_contain_text("1 answered")
    expect(mei).to_contain_text("1 within target")
    expect(mei.locator(".badge")).to_have_count(0)
    shot(page, "dashboard", tmp_path)
    page.select_option("#days", "7")
    expect(page.locator("#heat-totals")).to_contain_text("1 in")
