"""A hostile customer cannot run script in an agent's browser: markup in a message is shown as
text, and an HTML page or an SVG sent as a file is downloaded, never rendered in the app's
origin (and would run sandboxed if it were). Each payload calls a loopback receiver if it runs.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import PASSWORD, add_agent, sign_in
from tests.conftest import Tenant
from tests.live import Stack
from tests.receiver import receiver
from tidings.bootstrap import Tidings


def test_a_customers_markup_html_and_svg_never_run_in_the_inbox(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    email = add_agent(tidings, tenant)
    with receiver() as alarm:
        beacon = f"fetch('{alarm.url}/ran',{{method:'POST',mode:'no-cors',body:'x'}})"
        customer = f"{stack.simulator.url}/_simulator/customers/886912345678"
        markup = f'<img src=x onerror="{beacon}"><script>{beacon}</script><b>bold</b>'
        httpx.post(
            f"{customer}/messages", json={"text": markup, "name": "Mallory"}
        ).raise_for_status()
        for mime_type, content in {
            "text/html": f"<html><body><script>{beacon}</script>hello</body></html>",
            "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg"><script>{beacon}'
            "</script></svg>",
        }.items():
            httpx.post(
                f"{customer}/media", content=content.encode(), headers={"Content-Type": mime_type}
            ).raise_for_status()

        page = browser.new_page(locale="en-US", accept_downloads=True)
        sign_in(page, stack.app_url, tenant, email, PASSWORD)
        page.wait_for_url("**/app/inbox")
        page.locator(".conversation", has_text="Mallory").click(timeout=20_000)
        # The markup is the message's text, shown as text.
        expect(page.locator(".message.in .text").first).to_have_text(markup, timeout=20_000)
        # The HTML page is offered as a file to download; the SVG is a picture (an <img>,
        # where SVG never runs script).
        document = page.locator(".message.in a.attachment")
        expect(document).to_have_count(1, timeout=20_000)
        with page.expect_download() as download:
            document.click()
        assert download.value.suggested_filename
        picture = page.locator(".message.in img.media")
        expect(picture).to_have_count(1)
        # Opened straight in a tab, either one is a download, not a page of our origin.
        for url in (document.get_attribute("href"), picture.get_attribute("src")):
            tab = browser.new_context(storage_state=page.context.storage_state()).new_page()
            # Chromium reports a navigation that turned into a download as an error.
            with (
                tab.expect_download(),
                pytest.raises(PlaywrightError, match="Download is starting"),
            ):
                tab.goto(f"{stack.app_url}{url}")
            tab.context.close()
        page.wait_for_timeout(1000)  # time for any beacon that would have fired
        assert alarm.received == [], "a customer's content ran script"
