"""Steps shared by the browser end-to-end tests: a call in progress between the Caller and
Agent A (with Agent B available), a consult, the way back to A, and the caller hanging up.
Each step asserts what each person sees and, through the LiveKit server API, who is where."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from playwright.async_api import expect

from tests.browser.pages import VIEWPORT, AgentPage, CallerPage, T

CALLER = "Maria Lopez"


async def until(check, what: str, timeout: float = 20.0):
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class World:
    caller: CallerPage
    a: AgentPage
    b: AgentPage
    call_room: str
    caller_identity: str
    contexts: list


async def room_names(lk_api, prefix: str) -> list[str]:
    return [r.name for r in await lk_api.list_rooms() if r.name.startswith(prefix)]


async def new_rooms(lk_api, prefix: str, before: set[str]) -> list[str]:
    return [name for name in await room_names(lk_api, prefix) if name not in before]


async def audio_publishers(lk_api, room: str) -> set[str]:
    return {p.identity for p in await lk_api.list_participants(room) if any(t.type == 0 for t in p.tracks)}


@contextlib.asynccontextmanager
async def call_in_progress(caller_browser, agent_browser, app_server, lk_api, shots):
    """Caller talking to Agent A (both hear each other); Agent B signed in and available."""
    contexts = [await b.new_context(viewport=VIEWPORT) for b in (caller_browser, agent_browser, agent_browser)]
    try:
        caller_page, a_page, b_page = [await c.new_page() for c in contexts]
        for page, who in ((caller_page, "caller"), (a_page, "agent-a"), (b_page, "agent-b")):
            shots.watch(page, who)
        a = await AgentPage(a_page, "a").open(app_server.url)
        b = await AgentPage(b_page, "b").open(app_server.url)
        caller = await CallerPage(caller_page).open(app_server.url)
        await shots(a_page, "agent-a-sign-in")

        await a.sign_in("agent-a", "Alice (A)")
        await a.go_available()
        await b.sign_in("agent-b", "Bob (B)")
        await b.go_available()
        await expect(a.desk).to_contain_text("No calls waiting")

        rooms_before = set(await room_names(lk_api, "call-"))  # the session's server outlives tests
        await caller.call(CALLER, "agent-a")
        await expect(caller.headline).to_have_text("Calling Alice (A)…", timeout=T)
        await shots(caller_page, "caller-ringing")
        await expect(a.desk.locator(".wt-incoming-call")).to_contain_text(CALLER, timeout=T)
        await shots(a_page, "agent-a-incoming-call")

        await a.accept_call_from(CALLER)
        await expect(caller.headline).to_have_text("You're talking to Alice (A)", timeout=T)
        await expect(a.desk.get_by_test_id("availability")).to_have_text("On a call", timeout=T)

        (call_room,) = await until(lambda: new_rooms(lk_api, "call-", rooms_before), "the call room")
        caller_identity = "caller-" + call_room.removeprefix("call-")
        # Both publish their (fake) microphones, and each hears the other speak.
        await until(
            lambda: has(audio_publishers(lk_api, call_room), {caller_identity, "agent-a"}), "caller and A publishing"
        )
        await expect(a.room_person(a.call_room, "caller-")).to_have_attribute("data-speaking", "1", timeout=T)
        await expect(caller.room.locator(".wt-person[data-identity='agent-a']")).to_have_attribute(
            "data-speaking", "1", timeout=T
        )
        await shots(a_page, "agent-a-on-call")
        await shots(caller_page, "caller-talking-to-a")
        yield World(caller, a, b, call_room, caller_identity, contexts)
    finally:
        for c in contexts:
            with contextlib.suppress(Exception):
                await c.close()


async def has(coro, expected: set[str]) -> bool:
    return expected <= await coro


async def start_consult(w: World, lk_api, shots) -> str:
    """A starts a warm transfer to B: hold for the caller, summary for A and B, consult room."""
    consults_before = set(await room_names(lk_api, "consult-"))
    await w.a.start_transfer_to("agent-b")
    await expect(w.a.desk.get_by_test_id("transfer-state")).to_have_text("Consulting", timeout=T)
    await expect(w.a.desk.get_by_test_id("transfer-summary")).to_contain_text(CALLER, timeout=T)
    await expect(w.caller.headline).to_have_text("On hold — please wait", timeout=T)
    await expect(w.a.call_room.get_by_test_id("room-state")).to_have_text("On hold", timeout=T)

    card = w.b.desk.locator(".wt-incoming-transfer")
    await expect(card).to_contain_text("Incoming transfer", timeout=T)
    await expect(card).to_contain_text("Alice (A)")
    await expect(card.get_by_test_id("incoming-summary")).to_contain_text(CALLER)
    await expect(card.get_by_role("button", name="Accept")).to_be_enabled()
    await expect(card.get_by_role("button", name="Decline")).to_be_enabled()
    # Both agents are in the consult with the briefing, which speaks the brief to B.
    await expect(w.b.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await expect(w.a.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await expect(w.b.consult.locator(".wt-person", has_text="Transfer briefing")).to_be_visible(timeout=T)
    await expect(w.b.consult.locator(".wt-person", has_text="Transfer briefing")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )
    # The call job (in the room all call long) is what the caller hears now: hold audio.
    await expect(w.caller.room.locator(".wt-person", has_text="Call media")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )
    await expect(w.a.timeline).to_contain_text("Consulting", timeout=T)

    (consult,) = await until(lambda: new_rooms(lk_api, "consult-", consults_before), "the consult room")
    tid = consult.removeprefix("consult-")
    assert await until(
        lambda: has(lk_api.identities(consult), {"agent-a", "agent-b", f"briefing-{tid}"}), "A, B, briefing in consult"
    )
    call_ids = await lk_api.identities(w.call_room)
    assert "agent-b" not in call_ids and w.caller_identity in call_ids
    # Server-enforced hold: A stays in the call room but publishes nothing there.
    assert await until(
        lambda: lacks(audio_publishers(lk_api, w.call_room), "agent-a"), "A's microphone off in the call room"
    )
    await shots(w.caller.page, "caller-on-hold")
    await shots(w.a.page, "agent-a-consulting")
    await shots(w.b.page, "agent-b-incoming-transfer")
    return consult


async def lacks(coro, identity: str) -> bool:
    return identity not in await coro


async def back_with_a(w: World, lk_api, consult: str, a_notice: str, b_notice: str) -> None:
    await expect(w.a.desk.get_by_test_id("notice")).to_contain_text(a_notice, timeout=T)
    await expect(w.b.desk.get_by_test_id("notice")).to_contain_text(b_notice, timeout=T)
    await expect(w.caller.headline).to_have_text("You're back with Alice (A)", timeout=T)
    await expect(w.a.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await expect(w.b.desk.locator(".wt-incoming-transfer")).to_have_count(0, timeout=T)
    await until(lambda: gone(lk_api, consult), "the consult room deleted")
    # A re-published the microphone when the server gave the permissions back.
    await until(lambda: has(audio_publishers(lk_api, w.call_room), {"agent-a", w.caller_identity}), "A publishing")
    ids = await lk_api.identities(w.call_room)
    assert "agent-b" not in ids
    # Hold audio is off: the call job stays in the room, silent.
    await expect(w.caller.room.locator(".wt-person", has_text="Call media")).to_have_attribute(
        "data-speaking", "0", timeout=T
    )
    await expect(w.caller.room.locator(".wt-person[data-identity='agent-a']")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )


async def gone(lk_api, room: str) -> bool:
    return room not in await room_names(lk_api, room)


async def caller_hangs_up(w: World, lk_api) -> None:
    await w.caller.panel.get_by_role("button", name="Hang up").click()
    await expect(w.caller.headline).to_have_text("Call ended", timeout=T)
    await expect(w.a.desk.get_by_test_id("call-caller")).to_have_count(0, timeout=T)
    await expect(w.a.desk.get_by_test_id("availability")).to_have_text("Available", timeout=T)
    await until(lambda: gone(lk_api, w.call_room), "the call room deleted")
