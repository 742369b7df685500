"""A complete warm transfer, a decline and a cancel, through the UI only: three browser
contexts (Caller, Agent A, Agent B) with fake microphones playing real speech. Each step
asserts what each person sees, and the LiveKit server API says who is in which room."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import expect

from functions.events import (
    SegmentPayload,
    SummaryUpdated,
    SummaryUpdatedPayload,
    TranscriptSegmentAdded,
)
from functions.media_protocol import INTERNAL_PATH, ReportEnvelope, TranscriptionStatus, internal_token
from functions.models import CallSummary
from tests.browser.flow import (
    CALLER,
    audio_publishers,
    back_with_a,
    call_in_progress,
    caller_hangs_up,
    gone,
    lacks,
    start_consult,
    until,
)
from tests.browser.pages import T

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
async def world(browser, app_server, lk_api, shots):
    async with call_in_progress(browser, browser, app_server, lk_api, shots) as w:
        yield w


async def test_complete_warm_transfer_through_the_ui(world, app_server, lk_api, shots):
    w = world
    # Captions and the rolling summary render from the data messages live transcription
    # sends (its own tests run Whisper; here they go through the real LiveKit data path).
    call_id = w.call_room.removeprefix("call-")
    segment = SegmentPayload(call_id=call_id, speaker="caller", text="My order 4417 arrived damaged.", start=0, end=2)
    await lk_api.send(w.call_room, TranscriptSegmentAdded(payload=segment))
    rolling = CallSummary(caller_name=CALLER, issue="Order 4417 arrived damaged", brief="Order arrived damaged.")
    payload = SummaryUpdatedPayload(call_id=call_id, summary=rolling)
    await lk_api.send(w.call_room, SummaryUpdated(payload=payload), ["agent-a"])
    await expect(w.a.live.get_by_test_id("captions")).to_contain_text("Caller", timeout=T)
    await expect(w.a.live.get_by_test_id("captions")).to_contain_text("My order 4417 arrived damaged.")
    await expect(w.a.live.get_by_test_id("live-summary")).to_contain_text("Order 4417 arrived damaged")
    await expect(w.caller.panel).not_to_contain_text("4417")  # callers never see summaries

    # The media worker falls behind: the report its call job sends when the room is 7 s behind and
    # has dropped speech, posted to the app as a job posts it (live transcription is off here, so no
    # real job's report races it). A's desk says so in words; B's card says what it may miss.
    ctx = app_server.app.state.ctx
    status = TranscriptionStatus(call_id=call_id, behind_s=7.2, dropped=2, dropped_s=8.6)
    secret = ctx.settings.livekit_api_secret.get_secret_value()
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            app_server.url.rstrip("/") + INTERNAL_PATH,
            json=ReportEnvelope(report=status).model_dump(mode="json"),
            headers={"Authorization": f"Bearer {internal_token(secret)}"},
        )
    assert r.status_code < 300, r.text
    lag = w.a.live.get_by_test_id("caption-lag")
    await expect(lag).to_contain_text("Captions are 7 s behind", timeout=T)
    await expect(lag).to_contain_text("9 s of speech (2 utterances) were not transcribed")

    consult = await start_consult(w, lk_api, shots)
    card = w.b.desk.locator(".wt-incoming-transfer")
    await expect(card.get_by_test_id("incoming-summary")).to_contain_text(
        "This summary may miss the last 7 seconds.", timeout=T
    )

    await w.b.desk.locator(".wt-incoming-transfer").get_by_role("button", name="Accept").click()
    await expect(w.caller.headline).to_have_text("Now connected to Bob (B)", timeout=T)
    await expect(w.a.desk.get_by_test_id("notice")).to_contain_text(
        "Transfer completed: the caller is now with Bob (B).", timeout=T
    )
    await expect(w.b.desk.get_by_test_id("notice")).to_contain_text("you're now with the caller", timeout=T)
    await expect(w.b.desk.get_by_test_id("call-caller")).to_have_text(CALLER, timeout=T)
    await expect(w.b.call_room.get_by_test_id("room-state")).to_have_text("Connected", timeout=T)
    await expect(w.a.call_room.get_by_test_id("room-state")).to_have_text("Disconnected", timeout=T)
    await expect(w.a.desk.get_by_test_id("availability")).to_have_text("Available", timeout=T)
    for step in ("Consulting", "Completing", "Completed"):
        await expect(w.a.timeline).to_contain_text(step, timeout=T)
        await expect(w.b.timeline).to_contain_text(step, timeout=T)
    # The caller hears B now: B's (fake) microphone is speaking in the caller's room.
    await expect(w.caller.room.locator(".wt-person[data-identity='agent-b']")).to_have_attribute(
        "data-speaking", "1", timeout=T
    )
    await expect(w.caller.room.locator(".wt-person[data-identity='agent-a']")).to_have_count(0)

    # The LiveKit server: A gone, caller and B together, no hold music, consult room gone.
    await until(lambda: gone(lk_api, consult), "the consult room deleted")
    media = "media-" + w.call_room.removeprefix("call-")  # the call job stays, its hold track gone
    assert await lk_api.identities(w.call_room) == {w.caller_identity, "agent-b", media}
    await until(lambda: lacks(audio_publishers(lk_api, w.call_room), media), "the hold track unpublished")
    assert await audio_publishers(lk_api, w.call_room) == {w.caller_identity, "agent-b"}
    await shots(w.caller.page, "caller-now-with-b")
    await shots(w.a.page, "agent-a-transfer-completed")
    await shots(w.b.page, "agent-b-on-call")

    # The Calls dashboard (for signed-in agents) follows live.
    await w.a.page.get_by_role("tab", name="Calls").click()
    board = w.a.page.locator("#wt-calls-calls")
    await expect(board.locator(".wt-calls-table")).to_contain_text(CALLER, timeout=T)
    await expect(board.locator(".wt-calls-table")).to_contain_text("Bob (B)")
    await expect(board.locator(".wt-transfers-table")).to_contain_text("completed", timeout=T)
    await expect(board.locator(".wt-agents")).to_contain_text("On a call")
    # Which backend runs the service functions (FUNCTIONS_BACKEND; local here, no Modal).
    services = board.get_by_test_id("services")
    await expect(services).to_have_text("Service functions: local (in-process) · live transcription off")
    # Where each function last ran: B's brief was synthesized by the consult job, in the media worker.
    functions = board.locator(".wt-functions-table")
    await expect(functions.locator("tr", has_text="synthesize_speech")).to_contain_text(
        "local (media worker) · media worker", timeout=T
    )
    await expect(functions.locator("tr", has_text="synthesize_speech")).to_contain_text("no")
    await shots(w.a.page, "calls-dashboard")
    await w.a.page.get_by_role("tab", name="Agent A").click()

    # B ends the call: the caller sees it, the room is gone.
    await w.b.desk.get_by_role("button", name="End call").click()
    await expect(w.caller.headline).to_have_text("Call ended", timeout=T)
    await until(lambda: gone(lk_api, w.call_room), "the call room deleted")
    await shots(w.caller.page, "caller-call-ended")


async def test_decline_through_the_ui(world, lk_api, shots):
    w = world
    consult = await start_consult(w, lk_api, shots)
    await w.b.desk.locator(".wt-incoming-transfer").get_by_role("button", name="Decline").click()
    await back_with_a(w, lk_api, consult, "Transfer declined", "Transfer declined")
    await expect(w.a.timeline).to_contain_text("Declined · by agent-b", timeout=T)
    await shots(w.a.page, "agent-a-after-decline")
    await shots(w.caller.page, "caller-back-with-a")
    await caller_hangs_up(w, lk_api)


async def test_cancel_through_the_ui(world, lk_api, shots):
    w = world
    consult = await start_consult(w, lk_api, shots)
    await w.a.desk.get_by_role("button", name="Cancel transfer").click()
    await back_with_a(w, lk_api, consult, "Transfer cancelled", "Transfer cancelled")
    await expect(w.b.timeline).to_contain_text("Cancelled · by agent-a", timeout=T)
    await shots(w.a.page, "agent-a-after-cancel")
    await shots(w.b.page, "agent-b-after-cancel")
    await caller_hangs_up(w, lk_api)
