"""Queues, the three-way introduction and the caller's place in line, through the UI only: browser
contexts (callers, agents) with fake microphones playing real speech, the app on the session's
livekit-server and media worker. Each step asserts what each person sees, and the LiveKit server
API says who is in which room."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.flow import audio_publishers, call_in_progress, has, start_consult, until
from tests.browser.pages import VIEWPORT, AgentPage, CallerPage, T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


async def test_queue_transfer_declined_by_the_first_accepted_by_the_next(browser, app_factory, lk_api, shots):
    """Bob and Carol answer "billing"; Bob (idle longest) is offered first, declines with a reason he
    picks, and the transfer goes on to Carol, who accepts."""
    app = await app_factory(agent_skills="agent-b:billing,agent-c:billing")
    async with call_in_progress(browser, browser, app, lk_api, shots) as w:
        c_ctx = await browser.new_context(viewport=VIEWPORT)
        w.contexts.append(c_ctx)
        c = await AgentPage(await c_ctx.new_page(), "b").open(app.url)
        shots.watch(c.page, "agent-c")
        await c.sign_in("agent-c", "Carol (C)")
        await c.go_available()

        target = w.a.desk.locator("select[name=target] option[value='queue:billing']")
        await expect(target).to_have_text("Queue: billing (2 available)", timeout=T)
        await w.a.start_transfer_to("queue:billing")
        await expect(w.a.desk.get_by_test_id("transfer-state")).to_have_text("Consulting", timeout=T)
        await expect(w.caller.headline).to_have_text("On hold — please wait", timeout=T)
        sub = w.caller.panel.get_by_test_id("caller-sub")
        await expect(sub).to_have_text("Please hold while I bring in a colleague from billing.", timeout=T)
        await shots(w.caller.page, "caller-told-billing")

        card = w.b.desk.locator(".wt-incoming-transfer")
        await expect(card).to_contain_text("via the billing queue", timeout=T)
        await expect(c.desk.locator(".wt-incoming-transfer")).to_have_count(0)  # one agent at a time
        await expect(w.b.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        await card.locator("select[name=decline-reason]").select_option("Not my area")
        await shots(w.b.page, "agent-b-declines")
        await card.get_by_role("button", name="Decline").click()
        moved_on = "The transfer went on to the next agent."
        await expect(w.b.desk.get_by_test_id("notice")).to_have_text(moved_on, timeout=T)
        await expect(card).to_have_count(0, timeout=T)

        c_card = c.desk.locator(".wt-incoming-transfer")
        await expect(c_card).to_contain_text("via the billing queue", timeout=T)
        await expect(c.consult.locator(".wt-person", has_text="Transfer briefing")).to_have_attribute(
            "data-speaking", "1", timeout=T
        )
        await expect(w.a.timeline).to_contain_text("Declined by agent-b — Not my area", timeout=T)
        await expect(w.a.timeline).to_contain_text("Offered to agent-c")
        await expect(w.caller.headline).to_have_text("On hold — please wait")  # never back with A meanwhile
        await shots(c.page, "agent-c-offered")
        await c_card.get_by_role("button", name="Accept").click()

        await expect(w.caller.headline).to_have_text("Now connected to Carol (C)", timeout=T)
        await expect(c.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        await expect(w.caller.room.locator(".wt-person[data-identity='agent-c']")).to_have_attribute(
            "data-speaking", "1", timeout=T
        )
        media = "media-" + w.call_room.removeprefix("call-")
        await until(
            lambda: _equals(lk_api.identities(w.call_room), {w.caller_identity, "agent-c", media}),
            "the caller with Carol alone",
        )
        await shots(w.a.page, "agent-a-queue-transfer-done")
        await w.caller.panel.get_by_role("button", name="Hang up").click()
        await expect(w.caller.headline).to_have_text("Call ended", timeout=T)


async def _equals(coro, expected: set[str]) -> bool:
    return await coro == expected


async def test_three_way_introduction_then_a_leaves(browser, app_server, lk_api, shots):
    async with call_in_progress(browser, browser, app_server, lk_api, shots) as w:
        await start_consult(w, lk_api, shots)
        await w.a.desk.get_by_role("button", name="Introduce (3-way)").click()

        # B joins the caller with A still there; the hold stops; all three talk.
        await expect(w.caller.headline).to_have_text("You're talking to Alice (A) and Bob (B)", timeout=T)
        await expect(w.b.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        for who in ("agent-a", "agent-b"):
            await expect(w.caller.room.locator(f".wt-person[data-identity='{who}']")).to_have_attribute(
                "data-speaking", "1", timeout=T
            )
        await expect(w.caller.room.locator(".wt-person", has_text="Call media")).to_have_attribute(
            "data-speaking", "0", timeout=T
        )
        await until(
            lambda: has(audio_publishers(lk_api, w.call_room), {w.caller_identity, "agent-a", "agent-b"}),
            "caller, A and B publishing",
        )
        await expect(w.a.desk.get_by_test_id("notice")).to_contain_text(
            "You, the caller and Bob (B) are talking", timeout=T
        )
        await expect(w.a.timeline).to_contain_text("Introduced: caller, A and B together", timeout=T)
        await shots(w.caller.page, "caller-three-way")
        await shots(w.a.page, "agent-a-introducing")
        await shots(w.b.page, "agent-b-introduced")

        await w.a.desk.get_by_role("button", name="Leave the call").click()
        await expect(w.caller.headline).to_have_text("Now connected to Bob (B)", timeout=T)
        # A's desk leaves the room itself (the server would remove it anyway).
        await expect(w.a.call_room.get_by_test_id("room-state")).to_have_text(
            re.compile("Not connected|Disconnected"), timeout=T
        )
        await expect(w.b.desk.get_by_test_id("call-caller")).to_have_text("Maria Lopez", timeout=T)
        await expect(w.a.timeline).to_contain_text("Completed", timeout=T)
        media = "media-" + w.call_room.removeprefix("call-")
        await until(
            lambda: _equals(lk_api.identities(w.call_room), {w.caller_identity, "agent-b", media}),
            "A gone from the caller's room",
        )
        await shots(w.caller.page, "caller-with-b-after-introduction")
        await w.b.desk.get_by_role("button", name="End call").click()
        await expect(w.caller.headline).to_have_text("Call ended", timeout=T)


async def test_the_caller_sees_its_place_in_line_and_an_estimated_wait(browser, app_server, shots):
    contexts = [await browser.new_context(viewport=VIEWPORT) for _ in range(3)]
    try:
        first = await CallerPage(await contexts[0].new_page()).open(app_server.url)
        second = await CallerPage(await contexts[1].new_page()).open(app_server.url)
        await expect(first.panel).to_contain_text("No agent is available right now", timeout=T)
        await first.call("Fiona First", None)
        line1 = first.panel.get_by_test_id("caller-queue")
        await expect(first.headline).to_have_text("Waiting for the next available agent…", timeout=T)
        await expect(line1).to_have_text("You're next in line · no agent is taking calls right now", timeout=T)
        await second.call("Sam Second", None)
        line2 = second.panel.get_by_test_id("caller-queue")
        await expect(line2).to_have_text("You're number 2 in line · no agent is taking calls right now", timeout=T)
        await shots(second.page, "caller-number-2")

        a = await AgentPage(await contexts[2].new_page(), "a").open(app_server.url)
        await a.sign_in("agent-a", "Alice (A)")
        await a.desk.get_by_role("button", name="Go available").click()
        # At once the oldest caller rings Alice; the other's wait is estimated.
        await expect(a.desk.get_by_test_id("availability")).to_have_text("Ringing", timeout=T)
        await expect(first.headline).to_have_text("Calling Alice (A)…", timeout=T)
        await expect(line2).to_have_text("You're number 2 in line · estimated wait about 2 min", timeout=T)
        await expect(a.desk.locator(".wt-incoming-call[data-ringing='1']")).to_contain_text("Fiona First", timeout=T)
        await shots(second.page, "caller-estimated-wait")

        await a.accept_call_from("Fiona First")
        await expect(first.headline).to_have_text("You're talking to Alice (A)", timeout=T)
        await expect(line2).to_contain_text("You're next in line", timeout=T)
        for caller in (first, second):
            await caller.panel.get_by_role("button", name="Hang up").click()
            await expect(caller.headline).to_have_text("Call ended", timeout=T)
    finally:
        for c in contexts:
            await c.close()
