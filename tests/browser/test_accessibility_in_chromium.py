"""axe-core on every page of the web app, as the demo serves it: in English, Thai and
Traditional Chinese, at desk and phone width, each list's first item opened too. No critical
and no serious violation (contrast, roles, names, focusable scroll regions…). And the layout
keeps every section of the menu in view and every button on one line, at every width."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.serving import serve_demo, tidings_env

ROOT = Path(__file__).resolve().parents[2]
# From the npm registry, as Prism is: `npm install --prefix .tools/axe axe-core@4`.
AXE = ROOT / ".tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SECTIONS = ("dashboard", "inbox", "contacts", "sequences", "rules", "broadcasts", "settings")
# The first item of a section's list, opened: its detail is a page of its own.
FIRST_ITEM = {
    "inbox": "#conversation-list li",
    "contacts": "#contact-list li",
    "sequences": "#sequence-list li",
    "rules": "#rule-list li",
    "broadcasts": "#broadcast-list li",
}
WIDTHS = (1280, 390)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        how = "npm install --no-audit --no-fund --prefix .tools/axe axe-core@4"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs axe-core: {how}", pytrace=False)
        pytest.skip(f"needs axe-core: {how}")
    return AXE.read_text(encoding="utf-8")


def violations(page: Page, axe: str) -> list[Any]:
    """Critical and serious violations on the page as it is now."""
    page.evaluate(axe)
    found: list[Any] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations
                .filter((v) => v.impact === "critical" || v.impact === "serious")
                .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
        }"""
    )
    return found


def layout_faults(page: Page) -> list[Any]:
    """Menu sections out of view, and buttons whose words break onto several lines (Chinese
    once broke one character per line), on the page as it is now."""
    faults: list[Any] = page.evaluate(
        """() => {
            const out = [];
            for (const link of document.querySelectorAll("nav.sections a")) {
                const box = link.getBoundingClientRect();
                if (box.width === 0 || box.right > window.innerWidth + 1 || box.left < -1) {
                    out.push(["section out of view", link.textContent]);
                }
            }
            for (const button of document.querySelectorAll("button")) {
                const box = button.getBoundingClientRect();
                const line = parseFloat(getComputedStyle(button).lineHeight) || 20;
                const wraps = box.width > 0 && box.height > 2.5 * line;
                if (wraps) out.push(["button wraps", button.textContent]);
            }
            return out;
        }"""
    )
    return faults


@pytest.mark.parametrize("language", ["en", "th", "zh-Hant"])
def test_every_page_has_no_critical_or_serious_accessibility_violation(
    browser: Browser, database_url: str, tmp_path: Path, axe_source: str, language: str
) -> None:
    found: dict[str, list[Any]] = {}
    with serve_demo(tidings_env(database_url, tmp_path), tmp_path) as (base, _):
        for width in WIDTHS:
            # axe runs as a script of the page: the app's policy (scripts of its own only)
            # would refuse it, so this page alone sets the policy aside.
            page = browser.new_page(viewport={"width": width, "height": 850}, bypass_csp=True)
            page.goto(f"{base}/app/login?lang={language}")
            found[f"{width} login"] = violations(page, axe_source)
            page.fill("input[name=workspace]", "demo")
            page.fill("input[name=email]", "owner@demo-shop.example")
            page.fill("input[name=password]", "tidings-demo")
            page.click("button[type=submit]")
            page.wait_for_url("**/app/inbox")
            found[f"{width} layout"] = layout_faults(page)
            for section in SECTIONS:
                page.goto(f"{base}/app/{section}?lang={language}")
                page.wait_for_load_state("networkidle")
                found[f"{width} {section}"] = violations(page, axe_source)
                if section in FIRST_ITEM:
                    first = page.locator(FIRST_ITEM[section]).first
                    first.click()
                    page.wait_for_load_state("networkidle")
                    found[f"{width} {section}, first opened"] = violations(page, axe_source)
            for narrower in (1440, 1024):  # the widths where long words once hid sections
                page.set_viewport_size({"width": narrower, "height": 850})
                found[f"{width}, then {narrower}: layout"] = layout_faults(page)
            page.close()
    assert {where: seen for where, seen in found.items() if seen} == {}
    assert len(found) == len(WIDTHS) * (2 + len(SECTIONS) + len(FIRST_ITEM) + 2)
