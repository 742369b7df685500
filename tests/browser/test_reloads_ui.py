"""Reloads keep what the code promises, and the desks say what is true (issue 15, item 5).

Three browser contexts (Caller, Agent A, Agent B) through the UI only, against the real app,
livekit-server and media worker. Each reload is `page.reload()`: the page leaves its rooms
(livekit-client's disconnect on page leave) and comes back with what its tab kept in
sessionStorage. After each, the test waits past the grace the control plane gives a departed
participant, then asserts the store, the LiveKit server and what each person sees.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import expect

from functions.models import CallStatus, TransferState
from tests.browser.flow import (
    CALLER,
    audio_publishers,
    back_with_a,
    call_in_progress,
    has,
    lacks,
    start_consult,
    until,
)
from tests.browser.pages import T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
SCRIPT_ERROR = re.compile(r"TypeError|ReferenceError|SyntaxError|js_on_load")


@pytest.fixture
async def world(browser, app_server, lk_api, shots):
    async with call_in_progress(browser, browser, app_server, lk_api, shots) as w:
        # Script errors: uncaught, and those Gradio catches around js_on_load and logs.
        errors: list[str] = []
        for page in (w.caller.page, w.a.page, w.b.page):
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and SCRIPT_ERROR.search(m.text) and errors.append(m.text))
        w.errors = errors
        yield w


def store_of(app_server):
    return app_server.app.state.ctx.store


async def past_grace(app_server, extra: float = 2.0) -> None:
    """Longer than any grace the control plane gives a participant who left a room."""
    s = app_server.app.state.ctx.settings
    await asyncio.sleep(max(s.caller_grace_s, s.target_grace_s) + extra)


async def test_caller_reload_keeps_the_call_talking_and_on_hold(world, app_server, lk_api, shots):
    w = world
    call_id = w.call_room.removeprefix("call-")
    store = store_of(app_server)

    # A reload lands on the first tab (Agent A): the call comes back without a click on Caller.
    await w.caller.page.reload()
    await past_grace(app_server)
    assert w.caller_identity in await lk_api.identities(w.call_room)
    assert store.get_call(call_id).status is CallStatus.active
    await w.caller.page.get_by_role("tab", name="Caller").click()
    await expect(w.caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)
    await expect(w.caller.room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    # A hears the reloaded caller again, the caller hears A.
    await until(lambda: has(audio_publishers(lk_api, w.call_room), {w.caller_identity, "agent-a"}), "both publishing")
    await expect(w.a.room_person(w.a.call_room, "caller-")).to_have_attribute("data-speaking", "1", timeout=T)
    await expect(w.caller.room.locator(".wt-person[data-identity='agent-a']")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )

    # On hold: a reload keeps the hold (and the hold audio).
    consult = await start_consult(w, lk_api, shots)
    await w.caller.page.reload()
    await past_grace(app_server)
    assert w.caller_identity in await lk_api.identities(w.call_room)
    assert store.get_call(call_id).status is CallStatus.on_hold
    await w.caller.page.get_by_role("tab", name="Caller").click()
    await expect(w.caller.headline).to_have_text("On hold — please wait", timeout=T)
    await expect(w.caller.room.locator(".wt-person", has_text="Call media")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )
    await shots(w.caller.page, "caller-reloaded-on-hold")

    # B accepts: the reloaded caller is with B.
    await w.b.desk.locator(".wt-incoming-transfer").get_by_role("button", name="Accept").click()
    await expect(w.caller.headline).to_have_text("Now connected to Bob (B)", timeout=T)
    await until(lambda: gone_room(lk_api, consult), "the consult room deleted")
    await expect(w.caller.room.locator(".wt-person[data-identity='agent-b']")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )
    assert not w.errors, w.errors


async def gone_room(lk_api, room: str) -> bool:
    return room not in {r.name for r in await lk_api.list_rooms()}


async def test_agent_reloads_mid_consult_rejoin_the_consult_and_the_call(world, app_server, lk_api, shots):
    w = world
    store = store_of(app_server)
    consult = await start_consult(w, lk_api, shots)
    tid = consult.removeprefix("consult-")

    # B reloads while hearing the brief: the transfer waits for B, B's desk comes back to it.
    reloaded = time.monotonic()
    await w.b.page.reload()
    await until(lambda: has(lk_api.identities(consult), {"agent-b"}), "B back in the consult", 30)
    print(f"B back in the consult {time.monotonic() - reloaded:.2f} s after the reload")  # for the record (-s)
    await w.b.page.get_by_role("tab", name="Agent B").click()
    card = w.b.desk.locator(".wt-incoming-transfer")
    await expect(card).to_contain_text("Incoming transfer", timeout=T)
    await expect(w.b.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await past_grace(app_server)
    assert store.get_transfer(tid).state is TransferState.consulting
    await expect(w.caller.headline).to_have_text("On hold — please wait")
    assert await until(lambda: has(lk_api.identities(consult), {"agent-a", "agent-b"}), "A and B in the consult")
    await shots(w.b.page, "agent-b-reloaded-mid-consult")

    # A reloads during the hold: back in the consult, and in the call room on hold (muted both ways).
    reloaded = time.monotonic()
    await w.a.page.reload()
    await until(lambda: has(lk_api.identities(consult), {"agent-a"}), "A back in the consult", 30)
    await until(lambda: has(lk_api.identities(w.call_room), {"agent-a"}), "A back in the call room", 30)
    print(f"A back in the consult and the call room {time.monotonic() - reloaded:.2f} s after the reload")
    await expect(w.a.desk.get_by_test_id("transfer-state")).to_have_text("Consulting", timeout=T)
    await expect(w.a.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await expect(w.a.call_room.get_by_test_id("room-state")).to_have_text("On hold", timeout=T)
    await past_grace(app_server)
    assert store.get_transfer(tid).state is TransferState.consulting
    assert "agent-a" in await lk_api.identities(w.call_room)
    assert await until(lambda: lacks(audio_publishers(lk_api, w.call_room), "agent-a"), "A silent in the call room")
    await shots(w.a.page, "agent-a-reloaded-on-hold")

    # A cancels: the caller is back with A and hears A (not alone in the room).
    await w.a.desk.get_by_role("button", name="Cancel transfer").click()
    await back_with_a(w, lk_api, consult, "Transfer cancelled", "Transfer cancelled")
    assert not w.errors, w.errors


async def test_desks_say_what_is_true_and_forget_the_last_call(world, app_server, lk_api, shots):
    w = world
    await start_consult(w, lk_api, shots)

    # The caller hangs up mid-consult: nobody is "back with the caller".
    await w.caller.panel.get_by_role("button", name="Hang up").click()
    await expect(w.caller.headline).to_have_text("Call ended", timeout=T)
    a_notice, b_notice = w.a.desk.get_by_test_id("notice"), w.b.desk.get_by_test_id("notice")
    await expect(a_notice).to_contain_text("The caller hung up", timeout=T)
    await expect(b_notice).to_contain_text("The caller hung up", timeout=T)
    for notice in (a_notice, b_notice):
        await expect(notice).not_to_contain_text("back with the caller")
    await expect(w.b.desk.locator(".wt-incoming-transfer")).to_have_count(0, timeout=T)
    await expect(w.a.desk.get_by_test_id("availability")).to_have_text("Available", timeout=T)
    # The call is over: its summary and captions are not shown as if it went on.
    await expect(w.a.live.get_by_test_id("live-summary")).to_have_count(0, timeout=T)
    await shots(w.a.page, "agent-a-after-caller-hung-up")

    # The next call starts clean: no brief, timeline or notice from the one before.
    await w.caller.panel.get_by_role("button", name="Call again").click()
    await w.caller.call("Tom Baker", "agent-a")
    await w.a.accept_call_from("Tom Baker")
    await expect(w.caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)
    await expect(w.a.live.get_by_test_id("live-summary")).to_have_count(0)
    await expect(w.a.live).not_to_contain_text(CALLER)
    await expect(w.a.timeline).not_to_contain_text("Consulting")
    await expect(w.a.timeline).not_to_contain_text("Caller hung up")
    await expect(w.a.timeline).to_contain_text("Answered Tom Baker")
    await expect(w.a.desk.get_by_test_id("notice")).to_have_count(0)
    await shots(w.a.page, "agent-a-next-call")
    assert not w.errors, w.errors
