"""The issue's "done when", as a new agent lives it: ``tidings serve --demo`` running as a real
process, the agent signs in (in Thai), handles a customer's conversation, finds the contact's
history and sees why automation and the sending policy did what they did, then reads the same
in Traditional Chinese."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.serving import serve_demo, tidings_env
from tidings.web.i18n import WORDS

TH, ZH = WORDS["th"], WORDS["zh-Hant"]


def test_a_new_agent_handles_a_conversation_in_the_demo_and_sees_why(
    browser: Browser, database_url: str, tmp_path: Path
) -> None:
    with serve_demo(tidings_env(database_url, tmp_path), tmp_path) as (base, key):
        (number,) = httpx.get(
            f"{base}/api/v1/whatsapp-numbers", headers={"Authorization": f"Bearer {key}"}
        ).json()
        page = browser.new_page(locale="th-TH", viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/app/login")
        page.fill("input[name=workspace]", "demo")
        page.fill("input[name=email]", "mei@demo-shop.example")
        page.fill("input[name=password]", "tidings-demo")
        page.click("button[type=submit]")
        page.wait_for_url("**/app/inbox")
        expect(page.locator("[data-filter=mine]")).to_have_text(TH["mine"])
        expect(page.locator("#live")).to_have_attribute("data-state", "live")

        # A customer writes; the conversation appears live; the agent answers it.
        httpx.post(
            f"{number['api_base_url']}/_simulator/customers/66899990001/messages",
            json={"text": "สวัสดีค่ะ อยากสอบถามเรื่องสินค้าค่ะ", "name": "Pim Test"},
        ).raise_for_status()
        conversation = page.locator(".conversation", has_text="Pim Test")
        expect(conversation).to_be_visible(timeout=30_000)
        conversation.click()
        expect(page.locator(".message.in .text").last).to_have_text("สวัสดีค่ะ อยากสอบถามเรื่องสินค้าค่ะ")
        page.fill("#reply", "ยินดีค่ะ สนใจสินค้าตัวไหนคะ")
        page.press("#reply", "Enter")
        expect(page.locator("#reply")).to_have_value("")  # taken by the API
        expect(page.locator("#composer-error")).to_be_hidden()
        sent = page.locator(".message.out", has_text="สนใจสินค้าตัวไหนคะ")
        expect(sent.locator(".tick")).to_have_attribute("data-status", "read", timeout=30_000)

        # The contact's history, and why: the answer went out, and the rules that looked.
        page.click(f"nav.sections >> text={TH['contacts']}")
        page.wait_for_url("**/app/contacts")
        page.fill("#search", "Pim")
        page.locator(".contact", has_text="Pim Test").click()
        expect(page.locator("#timeline .message.in")).to_contain_text("อยากสอบถามเรื่องสินค้า")
        expect(page.locator("#timeline .message.out").first).to_contain_text("สนใจสินค้าตัวไหนคะ")
        queued = page.locator("#why li.send[data-outcome='queued']").first
        expect(queued).to_be_visible()
        # Only what went wrong or waits is coloured: a message queued is told in plain ink.
        expect(queued.locator(".reason")).to_have_css("color", "rgb(29, 36, 48)")
        expect(page.locator("#why li").first).to_be_visible()

        page.click("text=繁體中文")
        expect(page.locator("nav.sections a[aria-current=page]")).to_have_text(ZH["contacts"])
        expect(page.locator("#h-why")).to_have_text(ZH["why"])
