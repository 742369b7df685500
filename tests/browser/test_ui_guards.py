"""Sign-in with the agent passcode, user text shown as text (never markup), and a denied
microphone explained to the caller, through the UI."""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from pydantic import SecretStr

from tests.browser.pages import AgentPage, CallerPage, T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
EVIL = '<img src=x onerror="window.__pwned=1">Eve'
DENY_MIC = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


async def test_passcode_escaping_and_denied_microphone(browser, app_factory, shots):
    app = await app_factory(agent_passcode=SecretStr("s3cret"))
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    caller_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    await caller_ctx.add_init_script(DENY_MIC)
    try:
        a = await AgentPage(await agent_ctx.new_page(), "a").open(app.url)
        shots.watch(a.page, "agent-a")
        await a.desk.locator("input[name=passcode]").fill("wrong")
        await a.desk.locator(".wt-signin").click()
        await expect(a.desk.get_by_role("alert")).to_contain_text("credential missing or wrong", timeout=T)
        await a.sign_in("agent-a", "Alice (A)", passcode="s3cret")
        await a.go_available()

        caller = await CallerPage(await caller_ctx.new_page()).open(app.url)
        shots.watch(caller.page, "caller")
        await expect(caller.panel).to_contain_text("1 agent available now.", timeout=T)
        await caller.call(EVIL, None)  # "First available agent"
        await expect(caller.headline).to_have_text("Calling Alice (A)…", timeout=T)
        # Connected and able to listen, with a clear way out of the blocked microphone.
        await expect(caller.room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        await expect(caller.room.get_by_role("alert")).to_contain_text("Microphone blocked", timeout=T)
        await expect(caller.room.get_by_role("button", name="Retry microphone")).to_be_visible()
        await shots(caller.page, "caller-microphone-blocked")

        row = a.desk.locator(".wt-incoming-call")
        await expect(row).to_contain_text(EVIL, timeout=T)  # the name as typed, as text
        await a.accept_call_from(EVIL)
        await expect(caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)
        for page in (a.page, caller.page):
            assert await page.evaluate("window.__pwned === undefined")
            assert await page.locator("img[src=x]").count() == 0
        await shots(a.page, "agent-a-escaped-name")

        # The network drops for a few seconds: the widget says so, and comes back by itself.
        await caller_ctx.set_offline(True)
        await expect(caller.room.get_by_test_id("room-state")).to_have_text("Reconnecting…", timeout=T)
        await shots(caller.page, "caller-reconnecting")
        await caller_ctx.set_offline(False)
        await expect(caller.room.get_by_test_id("room-state")).to_have_text("Connected", timeout=30_000)
        await expect(caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)

        # Reloading the page keeps the call (caller) and the sign-in and call audio (agent).
        await caller.page.reload()
        await caller.page.get_by_role("tab", name="Caller").click()
        await expect(caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)
        await expect(caller.room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        await a.page.reload()
        await expect(a.desk.get_by_test_id("call-caller")).to_have_text(EVIL, timeout=T)
        await expect(a.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        await expect(a.call_room.locator(".wt-person[data-identity^='caller-']")).to_have_count(1, timeout=T)

        await caller.panel.get_by_role("button", name="Hang up").click()
        await expect(caller.headline).to_have_text("Call ended", timeout=T)
        await expect(a.desk.get_by_test_id("availability")).to_have_text("Available", timeout=T)
    finally:
        await agent_ctx.close()
        await caller_ctx.close()


async def test_a_second_sign_in_asks_before_it_ends_the_first(browser, app_factory, shots):
    """AGENTS set: agent-b signs in on a second browser; the desk says B is signed in elsewhere and
    offers "Sign in here instead", which ends the first browser's session (it shows the sign-in form)."""
    app = await app_factory(agents=SecretStr("agent-b:beta-secret-22"))
    first_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    second_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        first = await AgentPage(await first_ctx.new_page(), "b").open(app.url)
        shots.watch(first.page, "agent-b-first")
        await first.desk.locator("input[name=identity]").fill("agent-b")
        await first.desk.locator("input[name=passcode]").fill("not-b-secret")
        await first.desk.locator(".wt-signin").click()
        await expect(first.desk.get_by_role("alert")).to_contain_text("wrong credential for agent", timeout=T)
        await first.sign_in("agent-b", "Bob (B)", passcode="beta-secret-22")

        second = await AgentPage(await second_ctx.new_page(), "b").open(app.url)
        shots.watch(second.page, "agent-b-second")
        await second.desk.locator("input[name=identity]").fill("agent-b")
        await second.desk.locator("input[name=name]").fill("Bob (B)")
        await second.desk.locator("input[name=passcode]").fill("beta-secret-22")
        await second.desk.locator(".wt-signin").click()
        await expect(second.desk.get_by_role("alert")).to_contain_text("already signed in elsewhere", timeout=T)
        await shots(second.page, "agent-b-signed-in-elsewhere")
        await expect(first.desk.get_by_test_id("agent-name")).to_have_text("Bob (B)")  # nothing ended yet
        await second.desk.get_by_role("button", name="Sign in here instead").click()
        await expect(second.desk.get_by_test_id("agent-name")).to_have_text("Bob (B)", timeout=T)
        # The first browser learns at its next request (at the latest its 10 s refresh).
        await expect(first.desk.locator(".wt-signin")).to_be_visible(timeout=15_000)
        await expect(first.desk.get_by_role("alert")).to_contain_text("sign in again", timeout=T)
    finally:
        await first_ctx.close()
        await second_ctx.close()
