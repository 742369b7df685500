"""Number validation, the Twilio dialer and the TwiML a phone leg hears.

Dialer tests run the real twilio SDK against `TwilioRecorder`, a local HTTP server
standing in for Twilio's REST host (`twilio_api_base_url` points the SDK's base URL at
it): the assertions are on the exact HTTP parameters the SDK sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from control.phone_bridge import (
    BRIEF_MAX_CHARS,
    PROMPT,
    bridge_twiml,
    goodbye_twiml,
    sip_target,
    speakable,
    whisper_twiml,
)
from functions.errors import ConfigError, InvalidInput, ProviderError
from functions.models import DialRequest
from functions.services import build_services
from functions.settings import load_settings
from functions.telephony.telephony import TwilioDialer, dial_phone, make_dialer, normalize_e164
from tests.support.twilio_recorder import TwilioRecorder

pytestmark = pytest.mark.unit

SID = "AC" + "0" * 32
TOKEN = "test-auth-token"
FROM = "+14155550100"
PUBLIC = "https://wt.example.test"


@pytest.fixture
def recorder():
    with TwilioRecorder() as rec:
        yield rec


def twilio_settings(tmp_path, recorder=None, **extra):
    return load_settings(
        data_dir=tmp_path,
        livekit_url="",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number=FROM,
        twilio_api_base_url=recorder.url if recorder else "",
        twilio_ring_timeout_s=20,
        public_base_url=PUBLIC,
        **extra,
    )


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14155550123", "+14155550123"),
        (" +1 (415) 555-0123 ", "+14155550123"),
        ("+1.415.555.0123", "+14155550123"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+49 30 901820", "+4930901820"),
        ("+61 2 9374 4000", "+61293744000"),
    ],
)
def test_valid_numbers_are_normalized_to_e164(raw, e164):
    assert normalize_e164(raw) == e164


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("call me maybe", "not a phone number"),
        ("+1415555O123", "not a phone number"),  # letter O
        ("+14155550123;ext=9", "not a phone number"),
        ("+14155550123w1234", "not a phone number"),
        ("+14155550123#", "not a phone number"),
        ("sip:alice@example.com", "not a phone number"),
        ("+١٤١٥٥٥٥٠١٢٣", "not a phone number"),  # non-ASCII digits
        ("4155550123", "no country code"),
        ("911", "emergency"),
        ("112", "emergency"),
        ("20202", "short code"),
        ("#123#", "not a phone number"),
        ("+0123456789", "not a valid international number"),
        ("+1234567", "not a valid international number"),
        ("+1234567890123456", "8-15 digits"),
        ("+1415555012", "10 digits"),
        ("+14115550123", "N11"),
        ("+14155110123", "N11"),
        ("+10155550123", "cannot start with 0/1"),
        ("+19005550123", "premium"),
        ("+1 415 976 0123", "premium"),
        ("+44 909 879 0000", "premium"),
        ("+44 871 234 5678", "premium"),
        ("+33 8 99 12 34 56", "premium"),
        ("+49 900 1234567", "premium"),
        ("+61 1900 123 456", "premium"),
        ("1" * 200, "too long"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(raw, says):
    with pytest.raises(InvalidInput) as e:
        normalize_e164(raw)
    assert says in e.value.message
    assert len(e.value.message) < 200


def test_non_text_number_is_refused():
    with pytest.raises(InvalidInput):
        normalize_e164(14155550123)


# --- the dialer against the local REST recorder -----------------------------------------------------


def test_dial_sends_exact_call_parameters(tmp_path, recorder):
    """Real twilio SDK → local recorder (base URL overridden): exactly what calls.create sends."""
    dialer = make_dialer(twilio_settings(tmp_path, recorder))
    result = dialer.dial(
        DialRequest(to="+1 (415) 555-0123", transfer_id="t1"),
        status_callback=f"{PUBLIC}/twilio/status?tid=t1",
        answer_url=f"{PUBLIC}/twilio/answer?tid=t1",
    )
    [req] = recorder.requests
    assert req.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert req.auth == (SID, TOKEN)
    assert req.form == {
        "To": ["+14155550123"],
        "From": [FROM],
        "Url": [f"{PUBLIC}/twilio/answer?tid=t1"],
        "Method": ["POST"],
        "StatusCallback": [f"{PUBLIC}/twilio/status?tid=t1"],
        "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": ["20"],
    }
    assert list(recorder.calls) == [result.call_sid]
    assert result.to == "+14155550123" and result.status == "queued"


def test_dial_with_machine_detection(tmp_path, recorder):
    """Real twilio SDK → local recorder: AMD on, asynchronous when an AMD callback URL is given."""
    dialer = TwilioDialer(twilio_settings(tmp_path, recorder, twilio_machine_detection=True))
    dialer.dial(
        DialRequest(to="+14155550123", transfer_id="t1"),
        status_callback=f"{PUBLIC}/twilio/status?tid=t1",
        answer_url=f"{PUBLIC}/twilio/answer?tid=t1",
        amd_callback=f"{PUBLIC}/twilio/amd?tid=t1",
    )
    dialer.dial(
        DialRequest(to="+14155550123", transfer_id="t2"), status_callback="https://x/s", answer_url="https://x/a"
    )
    first, second = recorder.creates()
    assert first.one("MachineDetection") == "Enable"
    assert first.one("AsyncAmd") == "true"
    assert first.one("AsyncAmdStatusCallback") == f"{PUBLIC}/twilio/amd?tid=t1"
    assert first.one("AsyncAmdStatusCallbackMethod") == "POST"
    assert second.one("MachineDetection") == "Enable"  # synchronous: verdict comes with the answer webhook
    assert "AsyncAmd" not in second.form


def test_invalid_number_dials_nothing(tmp_path, recorder):
    """Real twilio SDK pointed at the local recorder: a refused number never reaches it."""
    dialer = make_dialer(twilio_settings(tmp_path, recorder))
    for bad in ("+19005550123", "911", "+1415<Say>"):
        with pytest.raises(InvalidInput):
            dialer.dial(DialRequest(to=bad, transfer_id="t1"), status_callback="https://x/s", answer_url="https://x/a")
    assert recorder.requests == []


def test_hangup_and_update_send_call_updates(tmp_path, recorder):
    """Real twilio SDK → local recorder: hang-up is `Status=completed` on the call resource."""
    dialer = make_dialer(twilio_settings(tmp_path, recorder))
    sid = dialer.dial(
        DialRequest(to="+14155550123", transfer_id="t1"), status_callback="https://x/s", answer_url="https://x/a"
    ).call_sid
    dialer.update_twiml(sid, goodbye_twiml("Bye & <thanks>"))
    dialer.hangup(sid)
    upd, hang = recorder.updates(sid)
    assert upd.path == f"/2010-04-01/Accounts/{SID}/Calls/{sid}.json"
    assert ET.fromstring(upd.one("Twiml")).find("Say").text == "Bye & <thanks>"
    assert hang.form == {"Status": ["completed"]}
    with pytest.raises(InvalidInput):
        dialer.hangup("CA123; DROP")
    assert len(recorder.requests) == 3


def test_twilio_errors_become_provider_errors(tmp_path, recorder):
    """Real twilio SDK → local recorder answering with Twilio's error body."""
    dialer = make_dialer(twilio_settings(tmp_path, recorder))
    recorder.fail_next = (400, 21215, "Geo Permission configuration is not permitting call")
    with pytest.raises(ProviderError) as e:
        dialer.dial(
            DialRequest(to="+442079460958", transfer_id="t1"), status_callback="https://x/s", answer_url="https://x/a"
        )
    assert "21215" in e.value.message and "Geo Permission" in e.value.message

    recorder.close()  # nothing listens any more
    with pytest.raises(ProviderError):
        dialer.hangup("CA" + "1" * 32)


def test_make_dialer_needs_twilio_settings(tmp_path):
    with pytest.raises(ConfigError) as e:
        make_dialer(load_settings(data_dir=tmp_path, livekit_url="", twilio_account_sid=""))
    assert "TWILIO_ACCOUNT_SID" in e.value.message
    with pytest.raises(ConfigError) as e:
        TwilioDialer(twilio_settings(tmp_path).model_copy(update={"twilio_from_number": "12345"}))
    assert "TWILIO_FROM_NUMBER" in e.value.message


def test_dial_phone_uses_public_webhook_urls(tmp_path, recorder):
    """Entry point, real twilio SDK → local recorder: webhook URLs carry the transfer id."""
    services = build_services(twilio_settings(tmp_path, recorder))
    result = dial_phone(DialRequest(to="+44 20 7946 0958", transfer_id="abc123"), services)
    [req] = recorder.creates()
    assert req.one("To") == result.to == "+442079460958"
    assert req.one("Url") == f"{PUBLIC}/twilio/answer?tid=abc123"
    assert req.one("StatusCallback") == f"{PUBLIC}/twilio/status?tid=abc123"

    no_public = build_services(twilio_settings(tmp_path, recorder).model_copy(update={"public_base_url": ""}))
    with pytest.raises(ConfigError) as e:
        dial_phone(DialRequest(to="+442079460958", transfer_id="abc123"), no_public)
    assert "PUBLIC_BASE_URL" in e.value.message
    with pytest.raises(InvalidInput):
        dial_phone(DialRequest(to="+442079460958", transfer_id="../etc"), services)
    assert len(recorder.requests) == 1


# --- TwiML ---------------------------------------------------------------------------------------------

INJECTION = "Caller said </Say><Dial>+19005550123</Dial><Say> & \"quoted\" 'x' <![CDATA[ ]]> <?xml?> done"


def test_whisper_escapes_the_brief():
    root = ET.fromstring(whisper_twiml(f"{PUBLIC}/twilio/gather?tid=t1&attempt=1", INJECTION))
    assert root.tag == "Response"
    [gather] = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "timeout": "8",
        "action": f"{PUBLIC}/twilio/gather?tid=t1&attempt=1",
        "method": "POST",
        "actionOnEmptyResult": "true",
    }
    says = [el.text for el in gather]
    assert [el.tag for el in gather] == ["Say", "Say", "Say"]
    assert says[1] == INJECTION  # spoken verbatim, never interpreted as TwiML
    assert says[2] == PROMPT
    assert root.find(".//Dial") is None


def test_brief_control_characters_and_length():
    text = "Order\x00 42\x1b[31m is\tlate\u200b " + "word " * 2000
    spoken = speakable(text)
    assert "\x00" not in spoken and "\x1b" not in spoken and "\t" not in spoken
    assert spoken.startswith("Order 42 [31m is late")
    assert len(spoken) <= BRIEF_MAX_CHARS + 1 and spoken.endswith("…")
    ET.fromstring(whisper_twiml("https://x/g", text))  # still well-formed XML
    assert speakable("") == speakable("\x00\x01") == "No summary is available for this call."


def test_bridge_twiml_dials_the_livekit_sip_uri():
    sip = sip_target("sip:trunkuser:s3cret@abc.sip.livekit.cloud;transport=tcp", "call-1a2b")
    root = ET.fromstring(bridge_twiml(sip, caller_id="+14155550123", dial_action_url="https://x/dial", timeout_s=10))
    assert [el.tag for el in root] == ["Say", "Dial"]
    dial = root.find("Dial")
    assert dial.attrib == {
        "callerId": "+14155550123",
        "action": "https://x/dial",
        "method": "POST",
        "timeout": "10",
        "answerOnBridge": "true",
    }
    el = dial.find("Sip")
    assert el.text == "sip:call-1a2b@abc.sip.livekit.cloud;transport=tcp"
    assert el.attrib == {"username": "trunkuser", "password": "s3cret"}
    assert sip_target("abc.sip.livekit.cloud", "call-x").uri == "sip:call-x@abc.sip.livekit.cloud"
    with pytest.raises(ValueError):
        sip_target("sip:bad host<x>", "call-x")


def test_phone_leg_refuses_a_malformed_sip_uri(tmp_path):
    from control.phone_bridge import TwilioPhoneLeg

    bad = twilio_settings(tmp_path, livekit_sip_uri="sip:bad host<x>")
    with pytest.raises(ConfigError) as e:
        TwilioPhoneLeg(build_services(bad))
    assert "LIVEKIT_SIP_URI" in e.value.message
    good = TwilioPhoneLeg(build_services(twilio_settings(tmp_path, livekit_sip_uri="sip:abc.sip.livekit.cloud")))
    assert good.can_bridge
    good.close()


async def test_webhooks_before_startup_answer_503_and_still_check_signatures(tmp_path):
    import httpx
    from fastapi import FastAPI
    from twilio.request_validator import RequestValidator

    from control.twilio_webhooks import twilio_router

    app = FastAPI()
    app.include_router(twilio_router(lambda: None, twilio_settings(tmp_path), lambda: None))
    url = f"{PUBLIC}/twilio/status?tid=t1"
    params = {"CallSid": "CA" + "2" * 32, "CallStatus": "ringing"}
    sig = RequestValidator(TOKEN).compute_signature(url, params)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
        assert (await client.post(url, data=params)).status_code == 403
        assert (await client.post(url, data=params, headers={"X-Twilio-Signature": sig})).status_code == 503
