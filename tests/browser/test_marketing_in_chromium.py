"""Sequences, rules and broadcasts driven in a real browser against Tidings served over HTTP,
a worker and the WhatsApp simulator: import a sequence file, read its steps, preview a test
lead, pause it and save an edit as a new version; write a tag rule with its live count and see
it applied to a customer who writes; create a small broadcast and watch it finish."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, add_marketer, shot, sign_in
from tests.conftest import Tenant
from tests.live import Stack
from tidings.bootstrap import Tidings

EXAMPLES = Path(__file__).parents[2] / "examples" / "sequences"


def signed_in_page(browser: Browser, stack: Stack, tenant: Tenant, email: str) -> Page:
    page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 860})
    sign_in(page, stack.app_url, tenant, email, PASSWORD)
    page.wait_for_url("**/app/inbox")
    return page


def test_a_marketer_imports_previews_pauses_and_edits_a_sequence(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    page = signed_in_page(browser, stack, tenant, add_marketer(tidings, tenant))
    page.click("nav.sections >> text=Sequences")
    page.wait_for_url("**/app/sequences")
    expect(page.locator("#sequence-list")).to_contain_text("No sequences yet")

    # Import the shipped welcome series from a file; it opens with its steps.
    page.set_input_files("#import-file", str(EXAMPLES / "welcome.yaml"))
    expect(page.locator("#sequence-name")).to_have_text("Welcome series · v1")
    expect(page.locator("#sequence-status")).to_have_text("draft")
    steps = page.locator("#steps .step")
    expect(steps).to_have_count(7)
    # The graph: a box per step, an arrow per way on (the condition's two labelled).
    expect(page.locator("#graph .node")).to_have_count(7)
    expect(page.locator("#graph .edge")).to_have_count(6)
    expect(page.locator("#graph .edge-label")).to_have_text(["yes →", "no →"])
    condition = page.locator("#steps .step[data-step='read-tips']")
    expect(condition.locator(".step-next")).to_contain_text("yes → offer")
    expect(condition.locator(".step-next")).to_contain_text("no → reminder")
    expect(
        page.locator("#steps .step[data-step='welcome'] [data-figure='entered'] dd")
    ).to_have_text("0")

    # Preview: a lead who reads everything takes the "yes" branch, one who reads nothing not.
    page.fill("#behaviours", "reads everything")
    page.click("text=Run the preview")
    preview = page.locator("#preview tbody")
    expect(preview.locator("tr[data-kind='message']").first).to_be_visible()
    expect(preview).to_contain_text("offer")
    expect(preview).not_to_contain_text("reminder")
    shot(page, "sequences", tmp_path)
    page.fill("#behaviours", "opens nothing")
    page.click("text=Run the preview")
    expect(preview).to_contain_text("reminder")
    expect(preview).not_to_contain_text("first_order_offer")
    page.fill("#behaviours", "sings a song")
    page.click("text=Run the preview")
    expect(page.locator("#preview-error")).to_contain_text("behaviours[0]")

    # Activate, then pause: the badge and the list follow.
    page.click("#toggle")
    expect(page.locator("#sequence-status")).to_have_text("active")
    page.click("#toggle")
    expect(page.locator("#sequence-status")).to_have_text("paused")
    expect(page.locator("#sequence-list")).to_contain_text("paused")

    # Edit the steps: a branch to a step that does not exist is refused at its field ...
    page.click("#edit")
    editor = page.locator("#editor-steps")
    condition_card = editor.locator("li[data-step='read-tips']")
    condition_card.locator("input[name=yes]").fill("nowhere")
    condition_card.locator("input[name=yes]").dispatch_event("change")
    page.click("#save")
    expect(page.locator("#editor-error")).to_contain_text(
        "definition.steps[4].yes: no step has the id 'nowhere'"
    )
    expect(condition_card.locator("input[name=yes]")).to_have_attribute("aria-invalid", "true")
    # ... and a good edit (wait two days instead of one) becomes version 2.
    condition_card.locator("input[name=yes]").fill("offer")
    condition_card.locator("input[name=yes]").dispatch_event("change")
    wait_card = editor.locator("li[data-step='wait-1d']")
    wait_card.locator("input[name=duration]").fill("2d")
    wait_card.locator("input[name=duration]").dispatch_event("change")
    page.click("#save")
    expect(page.locator("#sequence-name")).to_have_text("Welcome series · v2")
    expect(page.locator("#steps .step[data-step='wait-1d'] .step-summary")).to_have_text("2d")

    # Export gives the file back, with the edit.
    with page.expect_download() as download:
        page.click("#export")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "name: Welcome series" in text and "duration: 2d" in text

    # Phone width: one pane at a time, and back to the list.
    page.set_viewport_size({"width": 390, "height": 800})
    expect(page.locator(".conversations")).to_be_hidden()
    page.click("#back")
    expect(page.locator("#sequence-list")).to_be_visible()


def test_a_marketer_writes_a_tag_rule_with_a_live_count_and_sees_it_applied(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    for name, phone, tags in (
        ("Lin Mei", "+886912000111", ["vip"]),
        ("Wang Hao", "+886912000222", []),
        ("Chen Jie", "+886912000333", []),
    ):
        created = stack.api.post(
            "/api/v1/contacts", json={"name": name, "phone": phone, "tags": tags}
        )
        assert created.status_code == 201, created.text
    page = signed_in_page(browser, stack, tenant, add_marketer(tidings, tenant))
    page.click("nav.sections >> text=Rules")
    page.wait_for_url("**/app/rules")
    page.click("#new-rule")
    page.fill("#rule-name", "Tag new leads")

    # The count follows the condition as it is typed.
    definition = page.locator("#rule-definition")
    definition.fill('{"trigger": {"on": "message_received"}, "condition": {"has_tag": "vip"}}')
    expect(page.locator("#count")).to_have_text("1 contacts match the condition now")
    definition.fill('{"trigger": {"on": "message_received"}, "condition": {"has_tog": "vip"}}')
    expect(page.locator("#count")).to_have_attribute("data-state", "bad")
    definition.fill(
        '{"trigger": {"on": "message_received"},'
        ' "condition": {"not": {"has_tag": "vip"}},'
        ' "actions": [{"do": "add_tag", "tag": "new-lead"}]}'
    )
    expect(page.locator("#count")).to_have_text("2 contacts match the condition now")
    page.click("text=Save the rule")
    expect(page.locator("#rule-title")).to_have_text("Tag new leads")
    expect(page.locator("#rule-list .conversation")).to_contain_text("on")
    expect(page.locator("#runs")).to_contain_text("No runs yet.")

    # A customer writes; the rule fires for them and its trace appears.
    httpx.post(
        f"{stack.simulator.url}/_simulator/customers/66812345678/messages",
        json={"text": "สวัสดีค่ะ มีสินค้าไหมคะ", "name": "Suda"},
    ).raise_for_status()
    fired = page.locator("#runs tr[data-outcome='fired']")
    expect(fired).to_have_count(1, timeout=20_000)
    expect(fired.locator("a")).to_have_text("Suda")
    shot(page, "rules", tmp_path)
    fired.locator("a").click()
    page.wait_for_url("**/app/contacts?contact=*")
    expect(page.locator("#contact-name")).to_have_text("Suda")
    expect(page.locator("#profile")).to_contain_text("new-lead")
    expect(page.locator("#why li.rule").first).to_contain_text("Tag new leads")
    page.click("#conversations a")
    page.wait_for_url("**/app/inbox?conversation=*")
    expect(page.locator("#thread-name")).to_have_text("Suda")
    page.go_back()

    # Turned off, the rule says so.
    page.go_back()
    page.locator("#rule-list .conversation", has_text="Tag new leads").click()
    page.click("#toggle")
    expect(page.locator("#rule-state")).to_have_text("off")
    # A segment: the same live count, then its members.
    page.click("#new-segment")
    page.fill("#segment-name", "VIP")
    page.fill("#segment-condition", '{"has_tag": "vip"}')
    expect(page.locator("#segment-live")).to_have_text("1 contacts match the condition now")
    page.click("#segment-form button[type=submit]")
    expect(page.locator("#segment-title")).to_have_text("VIP")
    expect(page.locator("#members")).to_contain_text("Lin Mei")
    expect(page.locator("#segment-list .conversation")).to_contain_text("VIP")
    page.fill("#segment-condition", '{"has_tag": ')
    page.click("#segment-form button[type=submit]")
    expect(page.locator("#segment-error")).to_contain_text("condition")

    page.click("text=繁體中文")
    expect(page.locator("#new-rule")).to_have_text("新規則")
    expect(page.locator("nav.sections a[aria-current=page]")).to_have_text("自動規則")


def test_a_marketer_creates_a_small_broadcast_and_watches_it_finish(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant, tmp_path: Path
) -> None:
    synced = stack.api.post(f"/api/v1/whatsapp-numbers/{stack.number_id}/templates/sync")
    assert synced.status_code == 200, synced.text
    for index in range(3):
        created = stack.api.post(
            "/api/v1/contacts",
            json={"name": f"Guest {index}", "phone": f"+88691200050{index}", "tags": ["vip"]},
        )
        assert created.status_code == 201, created.text
    stack.api.post(
        "/api/v1/contacts", json={"name": "Not vip", "phone": "+886912000599"}
    ).raise_for_status()
    page = signed_in_page(browser, stack, tenant, add_marketer(tidings, tenant))
    page.click("nav.sections >> text=Broadcasts")
    page.wait_for_url("**/app/broadcasts")
    page.click("#new-broadcast")
    page.fill("#name", "Winter tea week")
    page.select_option("#template", label="weekly_promo · en · marketing")
    # One row per placeholder of the template's body: here the offer's own words.
    parameter = page.locator("#parameters .parameter")
    expect(parameter).to_have_count(1)
    parameter.locator("input").fill("20% off oolong")
    page.fill("#tags", "vip")

    # The estimate first: three recipients, well inside the daily limit.
    page.click("#estimate-button")
    expect(page.locator("#estimate-recipients")).to_have_text("3 recipients")
    expect(page.locator("#estimate-batches")).to_contain_text("one batch")
    # The sending policy's forecast: 14:00 in Taipei, inside the hours, nobody held back.
    expect(page.locator("#estimate-forecast [data-kind='queued']")).to_have_text(
        "3 go out as scheduled"
    )
    expect(page.locator("#estimate-forecast [data-kind='deferred']")).to_have_count(0)
    # The advanced condition: one that is not the condition language is refused by name.
    page.click("#broadcast-form summary")
    page.fill("#condition", '{"has_tog": "vip"}')
    page.click("#estimate-button")
    expect(page.locator("#form-error")).to_contain_text("audience.condition")
    page.fill("#condition", "")

    # Customers read a while after delivery: the broadcast has finished by then.
    httpx.patch(f"{stack.simulator.url}/_simulator/config", json={"read_delay": 10.0})
    # Sending asks to confirm the very request estimated; nothing goes before that.
    page.click("#send-button")
    expect(page.locator("#send-button")).to_have_text("Confirm: send to 3 recipients")
    assert stack.api.get("/api/v1/broadcasts").json() == []
    page.click("#send-button")
    expect(page.locator("#broadcast-name")).to_have_text("Winter tea week")
    # The worker plans and sends; the simulator delivers and reads; the page follows.
    expect(page.locator("#broadcast-status")).to_have_attribute(
        "data-status", "finished", timeout=30_000
    )
    expect(page.locator("#outcomes [data-figure='read']")).to_have_count(0)
    # The reads that come after the finish show without reopening the broadcast.
    expect(page.locator("#outcomes [data-figure='read'] dd")).to_have_text("3", timeout=30_000)
    expect(page.locator("#cancel")).to_be_hidden()
    shot(page, "broadcasts", tmp_path)
    expect(page.locator("#broadcast-list")).to_contain_text("finished")


def test_a_broadcast_at_a_local_time_in_quiet_hours_is_announced_as_waiting_before_it_is_sent(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    """23:00 in each contact's zone is inside quiet hours: the confirmation says the messages
    will wait, and why, before anything is scheduled."""
    synced = stack.api.post(f"/api/v1/whatsapp-numbers/{stack.number_id}/templates/sync")
    assert synced.status_code == 200, synced.text
    for index in range(2):
        stack.api.post(
            "/api/v1/contacts", json={"name": f"Night {index}", "phone": f"+88691200070{index}"}
        ).raise_for_status()
    page = signed_in_page(browser, stack, tenant, add_marketer(tidings, tenant))
    page.goto(f"{stack.app_url}/app/broadcasts")
    page.click("#new-broadcast")
    page.fill("#name", "Late offer")
    page.select_option("#template", label="weekly_promo · en · marketing")
    row = page.locator("#parameters .parameter")
    row.locator("select").select_option(label="First name")
    row.locator("input").fill("friend")
    page.check("input[name=when][value=local]")
    page.fill("#local-date", "2026-11-24")
    page.fill("#local-time", "23:00")
    page.click("#send-button")
    expect(page.locator("#send-button")).to_have_text("Confirm: send to 2 recipients")
    waiting = page.locator("#estimate-forecast [data-kind='deferred']")
    expect(waiting).to_contain_text("2 wait:")
    expect(waiting).to_contain_text("quiet hours")
    expect(page.locator("#estimate-forecast [data-kind='queued']")).to_have_count(0)
    page.click("#send-button")
    expect(page.locator("#broadcast-status")).to_have_attribute("data-status", "scheduled")
    (created,) = stack.api.get("/api/v1/broadcasts").json()
    assert (created["local_date"], created["local_time"][:5]) == ("2026-11-24", "23:00")
    parameter = created["template"]["components"][0]["parameters"][0]
    assert parameter == {"type": "text", "field": "first_name", "fallback": "friend"}


def test_a_marketer_makes_a_thai_keyword_group_tries_a_message_and_cannot_drop_it_in_use(
    browser: Browser, stack: Stack, tidings: Tidings, tenant: Tenant
) -> None:
    """On a phone, in Thai: the group ผ่อน ("instalments") with its words, one per line; a
    customer's sentence tried against it is cut into words and sets it off; a group a rule
    uses stays, with the reason."""
    page = signed_in_page(browser, stack, tenant, add_marketer(tidings, tenant))
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{stack.app_url}/app/rules?lang=th")
    expect(page.locator("#keyword-list").locator("xpath=preceding-sibling::h2[1]")).to_have_text(
        "กลุ่มคำสำคัญ"
    )
    page.click("#new-keywords")
    page.fill("#keyword-name", "ผ่อน")
    page.fill("#keyword-terms", "ผ่อน\nผ่อนได้ไหม\n\n分期")
    page.click("#keyword-form button[type=submit]")
    expect(page.locator("#keyword-title")).to_have_text("ผ่อน")
    expect(page.locator("#keyword-count")).to_have_text("3 คำ")
    # On a phone the list hides behind the open group; it is there when going back.
    expect(page.locator("#keyword-list li[data-name='ผ่อน']")).to_have_count(1)

    # By keyboard: type the customer's sentence and press Enter.
    page.fill("#keyword-sample", "อยากผ่อนได้ไหมคะ")
    page.press("#keyword-sample", "Enter")
    expect(page.locator("#keyword-hits")).to_have_attribute("data-groups", "ผ่อน")
    expect(page.locator("#keyword-words")).to_contain_text("ผ่อน")
    page.fill("#keyword-sample", "ขอบคุณค่ะ")
    page.press("#keyword-sample", "Enter")
    expect(page.locator("#keyword-hits")).to_have_text("ไม่ตรงกับกลุ่มใด")

    rule = {
        "name": "Instalment plan",
        "definition": {
            "trigger": {"on": "keyword", "keyword": "ผ่อน"},
            "actions": [{"do": "add_tag", "tag": "instalments"}],
        },
    }
    assert stack.api.post("/api/v1/rules", json=rule).status_code == 201
    page.click("#keyword-delete")
    expect(page.locator("#keyword-error")).to_contain_text("Instalment plan")
    page.reload()
    expect(page.locator("#keyword-list li[data-name='ผ่อน']")).to_be_visible()
