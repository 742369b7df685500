"""A warm transfer to a phone number, through Agent A's tab: the real twilio SDK dials a local
HTTP server that records its REST calls (`TwilioRecorder`, as `twilio_api_base_url`), and the
test posts Twilio's status and keypad webhooks to the running app, signed with the SDK's
`RequestValidator` and the test auth token. A's tab follows the outbound leg live; the phone
declines with "2" and the caller is back with A. Without Twilio the phone field says what it needs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest
from playwright.async_api import expect
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from tests.browser.flow import audio_publishers, call_in_progress, caller_hangs_up, gone, has, until
from tests.browser.pages import T
from tests.support.twilio_recorder import TwilioRecorder

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SID = "AC" + "2" * 32
TOKEN = "ui-phone-test-auth-token"
FROM = "+14155550100"
PUBLIC = "https://wt-ui.example.test"  # what Twilio would call; the signature covers this URL


class FakeTwilioCallbacks:
    """Posts webhooks to the app as Twilio's servers would, signed for PUBLIC_BASE_URL."""

    def __init__(self, app_url: str, tid: str, call_sid: str) -> None:
        self.app_url, self.tid, self.call_sid = app_url.rstrip("/"), tid, call_sid

    async def post(self, name: str, **fields: str) -> httpx.Response:
        path = f"/twilio/{name}?tid={self.tid}"
        params = {"CallSid": self.call_sid, "AccountSid": SID, "From": FROM, "To": "+14155550123", **fields}
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
        async with httpx.AsyncClient(timeout=20) as client:
            return await client.post(self.app_url + path, data=params, headers={"X-Twilio-Signature": signature})


@pytest.fixture
def recorder():
    with TwilioRecorder() as rec:
        yield rec


async def test_phone_transfer_declined_through_the_ui(browser, app_factory, recorder, lk_api, shots):
    app = await app_factory(
        twilio_account_sid=SID,
        twilio_auth_token=SecretStr(TOKEN),
        twilio_from_number=FROM,
        twilio_api_base_url=recorder.url,
        public_base_url=PUBLIC,
    )
    async with call_in_progress(browser, browser, app, lk_api, shots) as w:
        # Twilio is configured but no LIVEKIT_SIP_URI: A is told before dialing what that means.
        await expect(w.a.desk.get_by_test_id("phone-hint")).to_contain_text("LIVEKIT_SIP_URI")
        await w.a.desk.locator("input[name=phone]").fill("+1 (415) 555-0123")
        await w.a.desk.get_by_role("button", name="Start warm transfer").click()
        await expect(w.a.desk.get_by_test_id("transfer-state")).to_have_text("Consulting", timeout=T)
        await expect(w.a.desk.get_by_test_id("phone-leg")).to_have_text("Dialing")
        await expect(w.a.desk.get_by_role("button", name="Complete transfer")).to_have_count(0)
        await expect(w.caller.headline).to_have_text("On hold — please wait", timeout=T)

        (create,) = recorder.creates()
        assert create.one("To") == "+14155550123" and create.one("From") == FROM
        tid = create.one("Url").split("tid=")[1].split("&")[0]
        twilio = FakeTwilioCallbacks(app.url, tid, next(iter(recorder.calls)))

        assert (await twilio.post("status", CallStatus="ringing")).status_code == 204
        await expect(w.a.desk.get_by_test_id("phone-leg")).to_have_text("Ringing", timeout=T)
        await shots(w.a.page, "agent-a-phone-ringing")

        answered = await twilio.post("answer", CallStatus="in-progress")
        whisper = ET.fromstring(answered.text)
        assert any("Maria Lopez" in (s.text or "") for s in whisper.iter("Say")), answered.text
        assert whisper.find("Gather") is not None
        assert (await twilio.post("status", CallStatus="in-progress")).status_code == 204
        await expect(w.a.desk.get_by_test_id("phone-leg")).to_have_text("Answered: hearing the brief", timeout=T)
        await shots(w.a.page, "agent-a-phone-answered")

        declined = await twilio.post("gather", Digits="2", attempt="1")
        assert declined.status_code == 200 and ET.fromstring(declined.text).find("Hangup") is not None
        await expect(w.a.desk.get_by_test_id("notice")).to_contain_text("Transfer declined", timeout=T)
        await expect(w.caller.headline).to_have_text("You're back with Alice (A)", timeout=T)
        await expect(w.a.timeline).to_contain_text("Declined", timeout=T)
        await until(lambda: has(audio_publishers(lk_api, w.call_room), {"agent-a", w.caller_identity}), "A back")
        ids = await lk_api.identities(w.call_room)
        assert not any(i.startswith("hold-") for i in ids)
        await until(lambda: gone(lk_api, f"consult-{tid}"), "the consult room deleted")
        await shots(w.a.page, "agent-a-phone-declined")
        await caller_hangs_up(w, lk_api)


async def test_without_twilio_the_phone_field_says_what_it_needs(browser, app_server, lk_api, shots):
    async with call_in_progress(browser, browser, app_server, lk_api, shots) as w:
        await expect(w.a.desk.get_by_test_id("phone-hint")).to_contain_text("Phone transfers need Twilio")
        await expect(w.a.desk.locator("input[name=phone]")).to_be_disabled()
        await caller_hangs_up(w, lk_api)
