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
    page.locator("#settings").evaluate("main => main.scrollTo(0, 0)")
    shot(page, "settings", tmp_path)
    assert stack.api.get("/api/v1/workspace").json()["policy"]["daily_quota_per_number"] == 5000
