"""Phone transfers end to end: the real orchestrator on the real livekit-server, the real
twilio SDK pointed at a local HTTP server that records its REST calls (`TwilioRecorder`,
via `twilio_api_base_url`), and Twilio's webhooks posted to our FastAPI router with
signatures computed by the SDK's `RequestValidator` and the test auth token.

"The caller is back with A" is measured as audio: the caller hears A's 660 Hz tone
again and no longer hears the hold music.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest
from fastapi import FastAPI
from livekit import api
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from control.phone_bridge import DECLINED, NO_INPUT, NO_SIP, NO_SIP_REASON, PROMPT, REPROMPT, TwilioPhoneLeg
from control.rooms import Rooms
from control.store import Store
from control.transfer import TransferOrchestrator
from control.twilio_webhooks import twilio_router
from functions.errors import InvalidInput
from functions.gateway import make_gateway
from functions.models import CallStatus, CallSummary, TransferState
from functions.services import build_services
from functions.tts.speech import EspeakSpeaker
from tests.integration.conftest import B_HZ, CallWorld
from tests.support.twilio_recorder import TwilioRecorder

pytestmark = pytest.mark.integration
S = TransferState

SID = "AC" + "1" * 32
TOKEN = "phone-test-auth-token"
FROM = "+14155550100"
TARGET = "+14155550123"
PUBLIC = "https://wt.example.test"
SIP_URI = "sip:lkuser:lkpass@lk.sip.example.test"
INJECTED = 'Refund <b>& "urgent"</b> </Say><Dial>+19005550123</Dial><Hangup/> ]]>'


class PhoneWorld(CallWorld):
    """A CallWorld whose orchestrator has a TwilioPhoneLeg, plus an HTTP client for webhooks."""

    def __init__(self, orch, leg, recorder, client, notes) -> None:
        super().__init__(orch)
        self.leg, self.recorder, self.client, self.notes = leg, recorder, client, notes
        self.call_sid = ""

    async def initiate_phone(self, number: str = "+1 (415) 555-0123"):
        self.transfer = await self.orch.initiate(self.call.call_id, self.a_id, number)
        self.call_sid = self.leg.leg(self.transfer.transfer_id).call_sid
        return self.transfer

    def url(self, name: str, **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"tid": self.transfer.transfer_id, **query}.items())
        return f"{PUBLIC}/twilio/{name}?{q}"

    async def post(self, name: str, token: str | None = TOKEN, sign_url: str | None = None, **fields: str):
        """POST a webhook as Twilio would, signed with `token` (None = unsigned)."""
        url = self.url(name, **({"attempt": fields.pop("attempt")} if "attempt" in fields else {}))
        params = {"CallSid": self.call_sid, "AccountSid": SID, "From": FROM, "To": TARGET, **fields}
        headers = {}
        if token is not None:
            headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(sign_url or url, params)
        return await self.client.post(url, data=params, headers=headers)

    def state(self) -> TransferState:
        return self.orch.get_transfer(self.transfer.transfer_id).state

    def events(self) -> list:
        return self.orch.get_transfer(self.transfer.transfer_id).events

    async def caller_back_with_a(self) -> None:
        await self.caller.wait_hears(self.a_id, timeout=15)
        await self.caller.wait_not_hears(self.hold_id, timeout=15)
        call = self.orch.store.get_call(self.call.call_id)
        assert call.status is CallStatus.active and call.agent_identity == self.a_id


def twiml(resp: httpx.Response) -> ET.Element:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/xml")
    return ET.fromstring(resp.text)


def says(root: ET.Element) -> list[str]:
    return [el.text for el in root.iter("Say")]


@pytest.fixture
def recorder():
    with TwilioRecorder() as rec:
        yield rec


async def _phone_world(settings, recorder, *, sip_uri: str = "", machine_detection: bool = False):
    s = settings.model_copy(
        update={
            "twilio_account_sid": SID,
            "twilio_auth_token": SecretStr(TOKEN),
            "twilio_from_number": FROM,
            "twilio_api_base_url": recorder.url,
            "twilio_machine_detection": machine_detection,
            "public_base_url": PUBLIC,
            "livekit_sip_uri": sip_uri,
        }
    )
    services = build_services(s, speaker=EspeakSpeaker(s))
    store, rooms = Store(s.database_path), Rooms(s)
    gateway = make_gateway(s, services)  # the app dials through its functions gateway, as here
    leg = TwilioPhoneLeg(services, dial=gateway.dial_phone)
    brief = CallSummary(caller_name="Maria Lopez", brief=f"Maria Lopez wants a refund. {INJECTED}")
    orch = TransferOrchestrator(services, store, rooms, phone=leg, summary_source=lambda _call: brief, gateway=gateway)
    await orch.start()
    notes: list = []
    orch.bus.subscribe(notes.append)
    app = FastAPI()
    app.include_router(twilio_router(orch, s, leg))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC)
    world = await PhoneWorld(orch, leg, recorder, client, notes).start()

    async def close() -> None:
        await world.close()
        await client.aclose()
        await orch.aclose()
        await rooms.aclose()
        leg.close()
        store.close()

    return world, close


@pytest.fixture
async def world(settings, recorder, media_worker):  # the call jobs play the hold audio
    w, close = await _phone_world(settings, recorder)
    yield w
    await close()


@pytest.fixture
async def sip_world(settings, recorder, media_worker):
    w, close = await _phone_world(settings, recorder, sip_uri=SIP_URI, machine_detection=True)
    yield w
    await close()


# --- dialing -------------------------------------------------------------------------------------


async def test_phone_transfer_dials_whispers_and_decline_returns_caller_to_a(world):
    t = await world.initiate_phone()
    assert t.state is S.consulting and t.target == TARGET and t.target_kind.value == "phone"
    assert world.orch.store.get_call(world.call.call_id).status is CallStatus.on_hold

    # What Twilio was asked to do (real SDK → local recorder).
    [create] = world.recorder.creates()
    # The dial went through the functions gateway (in-process here; on Modal with FUNCTIONS_BACKEND=modal).
    dialed = [st for st in world.orch.gateway.function_status if st.function == "dial_phone"]
    assert [(st.kind, st.ok, st.fell_back) for st in dialed] == [("local", True, False)]
    tid = t.transfer_id
    assert create.form == {
        "To": [TARGET],
        "From": [FROM],
        "Url": [f"{PUBLIC}/twilio/answer?tid={tid}"],
        "Method": ["POST"],
        "StatusCallback": [f"{PUBLIC}/twilio/status?tid={tid}"],
        "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": ["25"],
    }
    # The caller is on hold: music, not A.
    await world.caller.wait_hears(world.hold_id, timeout=20)
    await world.caller.wait_not_hears(world.a_id)

    # Ringing: A's UI gets the live leg status.
    assert (await world.post("status", CallStatus="ringing")).status_code == 204
    leg_note = [n for n in world.notes if n.type == "transfer.phone_leg"][-1]
    assert leg_note.payload.status == "ringing" and leg_note.payload.call_sid == world.call_sid
    assert world.state() is S.consulting

    # Answered: the whisper. The brief is spoken verbatim, escaped by the builder.
    assert (await world.post("status", CallStatus="in-progress")).status_code == 204
    root = twiml(await world.post("answer", CallStatus="in-progress"))
    [gather] = list(root)
    assert gather.tag == "Gather" and gather.get("numDigits") == "1"
    assert gather.get("action") == f"{PUBLIC}/twilio/gather?tid={tid}&attempt=1"
    assert f"Maria Lopez wants a refund. {INJECTED}" in says(root)
    assert says(root)[-1] == PROMPT
    assert root.find(".//Dial") is None and root.find(".//Hangup") is None

    # 2 = decline: goodbye and hang up by TwiML; caller back with A; no REST hang-up needed.
    resp = await world.post("gather", attempt="1", Digits="2")
    root = twiml(resp)
    assert says(root) == [DECLINED] and root[-1].tag == "Hangup"
    assert world.state() is S.declined
    assert world.events()[-1].actor == TARGET
    await world.caller_back_with_a()
    assert world.recorder.updates() == []

    # Twilio retries the same request: same answer, no second state change.
    n_events = len(world.events())
    again = await world.post("gather", attempt="1", Digits="2")
    assert again.status_code == 200 and again.text == resp.text
    assert len(world.events()) == n_events
    # The leg's final status changes nothing either.
    assert (await world.post("status", CallStatus="completed")).status_code == 204
    assert world.state() is S.declined and len(world.events()) == n_events


async def test_invalid_number_changes_nothing(world):
    for bad in ("+1 900 555 0123", "911", "+1415555<Say>hi</Say>", "x" * 40):
        with pytest.raises(InvalidInput):
            await world.orch.initiate(world.call.call_id, world.a_id, "+" + bad.lstrip("+"))
    assert world.recorder.requests == []
    assert world.orch.store.list_transfers(call_id=world.call.call_id) == []
    assert world.orch.store.get_call(world.call.call_id).status is CallStatus.active
    await world.caller.wait_hears_only({world.a_id})


async def test_twilio_refusing_the_call_rolls_back(world):
    world.recorder.fail_next = (400, 21215, "Geo Permission configuration is not permitting call")
    with pytest.raises(Exception, match="21215"):
        await world.initiate_phone()
    [t] = world.orch.store.list_transfers(call_id=world.call.call_id)
    assert t.state is S.failed and "21215" in t.reason
    await world.caller_back_with_a()


# --- signatures, replays, bad input -------------------------------------------------------------------


async def test_unsigned_wrongly_signed_and_tampered_requests_are_refused(world):
    await world.initiate_phone()
    before = len(world.events())
    assert (await world.post("gather", token=None, attempt="1", Digits="2")).status_code == 403
    assert (await world.post("gather", token="not-the-token", attempt="1", Digits="2")).status_code == 403
    other = f"{PUBLIC}/twilio/gather?tid=someoneelse&attempt=1"
    assert (await world.post("gather", sign_url=other, attempt="1", Digits="2")).status_code == 403
    assert (await world.post("status", token=None, CallStatus="busy")).status_code == 403

    # Signed for Digits=2, sent with Digits=1: the body is part of the signature.
    url = world.url("gather", attempt="1")
    params = {"CallSid": world.call_sid, "AccountSid": SID, "Digits": "2"}
    sig = RequestValidator(TOKEN).compute_signature(url, params)
    resp = await world.client.post(url, data={**params, "Digits": "1"}, headers={"X-Twilio-Signature": sig})
    assert resp.status_code == 403
    assert world.state() is S.consulting and len(world.events()) == before
    await world.caller.wait_hears(world.hold_id, timeout=20)  # still on hold, A still muted
    await world.caller.wait_not_hears(world.a_id)


async def test_bad_webhook_input_gets_4xx(world):
    await world.initiate_phone()
    before = len(world.events())

    async def signed(url: str, params: dict) -> int:
        sig = RequestValidator(TOKEN).compute_signature(url, params)
        return (await world.client.post(url, data=params, headers={"X-Twilio-Signature": sig})).status_code

    assert await signed(f"{PUBLIC}/twilio/status", {"CallSid": world.call_sid, "CallStatus": "busy"}) == 400
    assert await signed(f"{PUBLIC}/twilio/status?tid=nope", {"CallSid": world.call_sid, "CallStatus": "busy"}) == 404
    assert await signed(world.url("status"), {"CallSid": "CA-bad", "CallStatus": "busy"}) == 400
    assert await signed(world.url("status"), {"CallSid": "CA" + "f" * 32, "CallStatus": "busy"}) == 403
    assert await signed(world.url("status"), {"CallSid": world.call_sid, "CallStatus": "exploded"}) == 400
    assert await signed(world.url("amd"), {"CallSid": world.call_sid}) == 400
    garbage = await world.client.post(world.url("status"), content=b"\xff\xfe%%%", headers={"X-Twilio-Signature": "x"})
    assert garbage.status_code in (400, 403)
    big = await world.client.post(world.url("status"), content=b"a=" + b"x" * 40_000)
    assert big.status_code == 413
    assert world.state() is S.consulting and len(world.events()) == before


# --- every way the phone leg can end without a bridge ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        ("no-answer", S.timed_out, "nobody answered"),
        ("busy", S.declined, "busy"),
        ("failed", S.failed, "could not connect"),
        ("completed", S.target_left, "hung up before accepting"),
    ],
)
async def test_leg_status_ends_transfer_and_caller_is_back_with_a(world, status, expected, reason):
    await world.initiate_phone()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    assert (await world.post("status", CallStatus="ringing")).status_code == 204
    assert (await world.post("status", CallStatus=status)).status_code == 204
    t = world.orch.get_transfer(world.transfer.transfer_id)
    assert t.state is expected and reason in t.reason and t.events[-1].actor == "twilio"
    await world.caller_back_with_a()
    assert world.recorder.updates() == []  # the call had already ended: nothing to hang up
    # A replayed status callback changes nothing.
    n = len(world.events())
    assert (await world.post("status", CallStatus=status)).status_code == 204
    assert len(world.events()) == n


async def test_no_input_twice_times_out(world):
    await world.initiate_phone()
    twiml(await world.post("answer", CallStatus="in-progress"))
    root = twiml(await world.post("gather", attempt="1", Digits=""))
    assert says(root) == [REPROMPT]
    assert root.find("Gather").get("action").endswith("attempt=2")
    assert world.state() is S.consulting
    root = twiml(await world.post("gather", attempt="2", Digits="7"))  # a wrong key on the last try
    assert says(root) == [NO_INPUT] and root[-1].tag == "Hangup"
    assert world.state() is S.timed_out
    await world.caller_back_with_a()


async def test_accept_without_sip_fails_honestly(world):
    assert not world.leg.can_bridge
    t = await world.initiate_phone()
    assert world.leg.room_identity(t) is None
    twiml(await world.post("answer", CallStatus="in-progress"))
    root = twiml(await world.post("gather", attempt="1", Digits="1"))
    assert says(root) == [NO_SIP] and root.find(".//Dial") is None and root[-1].tag == "Hangup"
    t = world.orch.get_transfer(t.transfer_id)
    assert t.state is S.failed and t.reason == NO_SIP_REASON
    await world.caller_back_with_a()


async def test_cancel_by_a_hangs_up_the_phone_leg(world):
    t = await world.initiate_phone()
    assert (await world.post("status", CallStatus="ringing")).status_code == 204
    await world.orch.cancel(t.transfer_id, actor=world.a_id)
    [hangup] = world.recorder.updates(world.call_sid)
    assert hangup.form == {"Status": ["completed"]}
    await world.caller_back_with_a()
    # The leg then reports completed: already cancelled, nothing changes; a late answer hears goodbye.
    assert (await world.post("status", CallStatus="completed")).status_code == 204
    assert world.state() is S.cancelled
    root = twiml(await world.post("answer", CallStatus="in-progress"))
    assert root[-1].tag == "Hangup" and root.find(".//Gather") is None


# --- SIP bridge and answering machines -----------------------------------------------------------------------


async def test_voicemail_ends_transfer_and_hangs_up(sip_world):
    w = sip_world
    t = await w.initiate_phone()
    [create] = w.recorder.creates()
    assert create.one("MachineDetection") == "Enable"
    assert create.one("AsyncAmd") == "true"
    assert create.one("AsyncAmdStatusCallback") == f"{PUBLIC}/twilio/amd?tid={t.transfer_id}"
    assert create.one("AsyncAmdStatusCallbackMethod") == "POST"
    assert (await w.post("status", CallStatus="in-progress")).status_code == 204
    assert (await w.post("amd", AnsweredBy="machine_end_beep")).status_code == 204
    t = w.orch.get_transfer(t.transfer_id)
    assert t.state is S.timed_out and "voicemail" in t.reason
    [hangup] = w.recorder.updates(w.call_sid)
    assert hangup.form == {"Status": ["completed"]}
    await w.caller_back_with_a()
    assert (await w.post("amd", AnsweredBy="machine_end_beep")).status_code == 204  # replay
    assert len(w.recorder.updates()) == 1


async def test_accept_with_sip_bridges_phone_leg_into_the_call(sip_world):
    w = sip_world
    t = await w.initiate_phone()
    assert w.leg.room_identity(t) == f"sip_{TARGET}"
    assert (await w.post("amd", AnsweredBy="human")).status_code == 204
    assert w.state() is S.consulting
    twiml(await w.post("answer", CallStatus="in-progress"))

    root = twiml(await w.post("gather", attempt="1", Digits="1"))
    dial = root.find("Dial")
    assert dial.get("callerId") == TARGET
    assert dial.get("action") == f"{PUBLIC}/twilio/dial?tid={t.transfer_id}"
    sip = dial.find("Sip")
    assert sip.text == f"sip:{w.call.room}@lk.sip.example.test"
    assert sip.attrib == {"username": "lkuser", "password": "lkpass"}
    assert w.state() is S.completing

    # What LiveKit's SIP service does on that INVITE: the leg joins the caller's room as
    # `sip_<calling number>` and publishes the phone audio (here a tone).
    token = (
        api.AccessToken(w.orch.settings.livekit_api_key, w.orch.settings.livekit_api_secret.get_secret_value())
        .with_identity(f"sip_{TARGET}")
        .with_grants(api.VideoGrants(room_join=True, room=w.call.room, can_publish=True, can_subscribe=True))
        .to_jwt()
    )
    phone = await w.peer(f"sip_{TARGET}", B_HZ).connect(w.orch.settings.livekit_url, token)
    done = await w.wait_state(S.completed)
    await w.caller.wait_hears(phone.identity)
    await w.caller.wait_not_hears(w.hold_id)
    await phone.wait_hears(w.call.caller_identity)
    await w.a.disconnected.wait()  # A left the call
    assert abs(w.caller.dominant_hz(phone.identity) - B_HZ) < 15
    assert [e.to_state for e in done.events] == [S.consulting, S.completing, S.completed]
    assert w.recorder.updates() == []  # the bridged leg is not hung up

    # Much later the bridged call ends; the dial action and final status change nothing.
    root = twiml(await w.post("dial", DialCallStatus="completed"))
    assert root[-1].tag == "Hangup"
    assert (await w.post("status", CallStatus="completed")).status_code == 204
    assert w.state() is S.completed


async def test_failed_sip_bridge_returns_caller_to_a(sip_world):
    w = sip_world
    t = await w.initiate_phone()
    twiml(await w.post("gather", attempt="1", Digits="1"))
    assert w.state() is S.completing
    root = twiml(await w.post("dial", DialCallStatus="failed"))
    assert root[-1].tag == "Hangup"
    t = w.orch.get_transfer(t.transfer_id)
    assert t.state is S.failed and "SIP bridge" in t.reason
    await w.caller_back_with_a()
