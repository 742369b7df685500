"""One evaluator, one page (issue 14, item 5): a single Chromium page plays the Caller, Agent A
and Agent B through the tabs, with one fake microphone (espeak-ng speaking one sentence, then a
pause; Chromium loops it), and a full warm transfer runs through it. Live transcription is on:
real Whisper base in the session's media worker, which captions each speaker's track.

Only the role of the visible tab publishes the microphone (the LiveKit server says which tracks
are unmuted), the others say on screen that their microphone is off, and no room of the page
plays back a participant the page is itself. The captions show it from the other end: the one
sentence is captioned under the Caller only while the Caller tab is shown, and under A (then B)
only while theirs is.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from functions.media_protocol import MAX_BEHIND_S
from tests.browser.conftest import launch, speech_file
from tests.browser.flow import CALLER, new_rooms, room_names, until
from tests.browser.pages import VIEWPORT, AgentPage, CallerPage, T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

SENTENCE = "My order number is four four one seven."
HEARD_S = 90.0  # an utterance ends, Whisper runs beside Chromium on 2 cores, the caption is sent
# After a tab switch, an utterance the other role spoke before it may still be captioned: it ends at
# the switch (muted), waits at most MAX_BEHIND_S for Whisper (then it is dropped) and takes a few
# seconds to transcribe. Past that, every new caption was spoken after the switch.
SETTLE_S = MAX_BEHIND_S + 4.0


@pytest.fixture
async def one_mic_browser(playwright, tmp_path):
    """Chromium with the one microphone of the evaluator: the sentence, 3 s of silence, again."""
    b = await launch(playwright, speech_file(tmp_path, SENTENCE, pause_s=3.0))
    yield b
    await b.close()


async def show(page: Page, tab: str) -> None:
    await page.get_by_role("tab", name=tab).click()


async def unmuted_mics(lk_api, room: str) -> set[str]:
    """Who publishes an unmuted microphone in `room`, as the LiveKit server sees it."""
    participants = await lk_api.list_participants(room)
    return {p.identity for p in participants if any(t.type == 0 and not t.muted for t in p.tracks)}


async def only_mic(lk_api, room: str, identity: str, others: set[str]) -> None:
    async def check() -> bool:
        mics = await unmuted_mics(lk_api, room)
        return identity in mics and not mics & others

    await until(check, f"only {identity} with an unmuted microphone in {room}")


async def played_here(page: Page) -> list[tuple[str, bool]]:
    """Every remote audio element of the page: (identity, whether the page is that participant)."""
    pairs = await page.evaluate(
        """() => { const ours = WT.pageIdentities();
        return Array.from(document.querySelectorAll("audio[data-wt-audio]"))
          .map((a) => [a.dataset.identity, ours.has(a.dataset.identity)]); }"""
    )
    return [(who, ours) for who, ours in pairs]


async def plays_here(page: Page, *identities: str) -> bool:
    """The page plays every one of these participants (they are not the page itself)."""
    heard = await played_here(page)
    return all((who, False) in heard for who in identities)


def caption_lines(live, speaker: str):
    return live.get_by_test_id("captions").locator("li", has=live.page.locator(".wt-speaker", has_text=speaker))


async def captions_follow_the_tab(page: Page, live, tab: str, *, speaking: str, silent: str) -> None:
    """Show `tab`; once the switch has settled, the sentence is captioned under `speaking`, and
    nothing new under `silent` (the same microphone, muted in that role)."""
    await show(page, tab)
    await asyncio.sleep(SETTLE_S)
    said, quiet = caption_lines(live, speaking), caption_lines(live, silent)
    before_said, before_quiet = await said.count(), await quiet.count()

    async def new_line() -> bool:
        return await said.count() > before_said

    await until(new_line, f"a caption under {speaking} while the {tab} tab is shown", HEARD_S)
    await expect(said.nth(before_said)).to_contain_text(re.compile("order", re.IGNORECASE))
    everything = await live.get_by_test_id("captions").locator("li").all_inner_texts()
    if await quiet.count() != before_quiet:  # say what the page and the server thought, for the log
        roles = await page.evaluate(
            "() => ({ role: WT.page.role, mic: WT.micRole(), live: Array.from(WT.liveRoles()), rooms: "
            "Object.values(WT.rooms).map((r) => [r.role, r.roomName, r.state, r.micEnabled, r.wantMic]) })"
        )
        raise AssertionError(f"{silent} captioned while {tab} had the microphone: {everything}; page: {roles}")


async def test_one_page_plays_caller_a_and_b_with_one_microphone(one_mic_browser, app_factory, lk_api, shots):
    app = await app_factory(live_transcription=True)
    context = await one_mic_browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        shots.watch(page, "one-page")
        await page.goto(app.url)
        a, b, caller = AgentPage(page, "a"), AgentPage(page, "b"), CallerPage(page)
        await show(page, "Agent A")
        await a.sign_in("agent-a", "Alice (A)")
        await a.go_available()
        await show(page, "Agent B")
        await b.sign_in("agent-b", "Bob (B)")
        await b.go_available()

        rooms_before = set(await room_names(lk_api, "call-"))
        await show(page, "Caller")
        await caller.call(CALLER, "agent-a")
        await expect(caller.headline).to_have_text("Calling Alice (A)…", timeout=T)
        await show(page, "Agent A")
        await a.accept_call_from(CALLER)
        (call_room,) = await until(lambda: new_rooms(lk_api, "call-", rooms_before), "the call room")
        caller_id = "caller-" + call_room.removeprefix("call-")

        # Two roles in the call: A's tab is shown, so A has the microphone; the caller's is off and says so.
        await only_mic(lk_api, call_room, "agent-a", {caller_id})
        await expect(page.get_by_test_id("page-roles")).to_contain_text("now Agent A", timeout=T)
        await expect(caller.room.get_by_test_id("mic-elsewhere")).to_contain_text("Microphone off")
        # Neither role plays the other back: they are the same person.
        await expect(a.call_room.locator(f".wt-person[data-identity='{caller_id}']")).to_have_attribute(
            "data-played", "0", timeout=T
        )
        await expect(caller.room.locator(".wt-person[data-identity='agent-a']")).to_have_attribute("data-played", "0")
        assert not [who for who, ours in await played_here(page) if ours]
        await shots(page, "a-has-the-microphone")

        # The one sentence, captioned under whoever's tab is shown (A's desk shows the call's captions).
        await captions_follow_the_tab(page, a.live, "Agent A", speaking="agent-a", silent="Caller")
        await captions_follow_the_tab(page, a.live, "Caller", speaking="Caller", silent="agent-a")
        await only_mic(lk_api, call_room, caller_id, {"agent-a"})
        await expect(a.call_room.get_by_test_id("mic-elsewhere")).to_contain_text("now Caller")
        await shots(page, "caller-has-the-microphone")

        # A transfers to B, on the same page.
        consults_before = set(await room_names(lk_api, "consult-"))
        await show(page, "Agent A")
        await a.start_transfer_to("agent-b")
        await expect(a.desk.get_by_test_id("transfer-state")).to_have_text("Consulting", timeout=T)
        (consult,) = await until(lambda: new_rooms(lk_api, "consult-", consults_before), "the consult room")
        briefing = "briefing-" + consult.removeprefix("consult-")
        await show(page, "Agent B")
        card = b.desk.locator(".wt-incoming-transfer")
        await expect(card).to_contain_text("Incoming transfer", timeout=T)
        await expect(b.consult.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
        # B speaks in the consult, A (same page) does not; B hears the brief, not A.
        await only_mic(lk_api, consult, "agent-b", {"agent-a"})
        await expect(b.consult.locator(f".wt-person[data-identity='{briefing}']")).to_have_attribute(
            "data-played", "1", timeout=T
        )
        await expect(b.consult.locator(".wt-person[data-identity='agent-a']")).to_have_attribute("data-played", "0")
        await expect(a.consult.get_by_test_id("mic-elsewhere")).to_contain_text("now Agent B")
        # The caller on hold hears the hold audio: the call job is not this page, so it is played.
        media = "media-" + call_room.removeprefix("call-")
        await expect(caller.room.locator(f".wt-person[data-identity='{media}']")).to_have_attribute(
            "data-speaking", "1", timeout=T
        )
        # The briefing's track comes when B arrives (media.track), so its audio element a moment later.
        await until(lambda: plays_here(page, media, briefing), "the hold audio and the brief played here")
        heard = await played_here(page)
        assert not [who for who, ours in heard if ours], heard
        await shots(page, "b-in-the-consult")

        # The evaluator reloads the page mid-consult: it lands on the Agent A tab, and all three roles
        # come back (the caller and B without their tabs being opened); the transfer goes on.
        await page.reload()
        settings = app.app.state.ctx.settings
        await asyncio.sleep(max(settings.caller_grace_s, settings.target_grace_s) + 2)
        store = app.app.state.ctx.store
        assert store.get_transfer(briefing.removeprefix("briefing-")).state.value == "consulting"
        assert {caller_id, "agent-a"} <= await lk_api.identities(call_room)
        assert {"agent-a", "agent-b"} <= await lk_api.identities(consult)
        await only_mic(lk_api, consult, "agent-a", {"agent-b"})  # A's tab is the one shown now
        assert not {"agent-a", caller_id} & await unmuted_mics(lk_api, call_room)  # A on hold; the caller's tab hidden
        assert not [who for who, ours in await played_here(page) if ours]
        await show(page, "Agent B")
        await only_mic(lk_api, consult, "agent-b", {"agent-a"})

        await card.get_by_role("button", name="Accept").click()
        await expect(b.desk.get_by_test_id("call-caller")).to_have_text(CALLER, timeout=T)
        assert "agent-a" not in await lk_api.identities(call_room)
        await only_mic(lk_api, call_room, "agent-b", {caller_id})
        # Now B's desk has the call's captions: B's words under B, the caller's under the Caller.
        await captions_follow_the_tab(page, b.live, "Agent B", speaking="agent-b", silent="Caller")
        await captions_follow_the_tab(page, b.live, "Caller", speaking="Caller", silent="agent-b")
        await expect(caller.headline).to_have_text("Now connected to Bob (B)", timeout=T)
        await expect(caller.room.locator(".wt-person[data-identity='agent-b']")).to_have_attribute(
            "data-played", "0", timeout=T
        )
        assert not [who for who, ours in await played_here(page) if ours]
        await shots(page, "caller-with-b")

        await caller.panel.get_by_role("button", name="Hang up").click()
        await expect(caller.headline).to_have_text("Call ended", timeout=T)
    finally:
        await context.close()
