"""The phone side of a warm transfer: `TwilioPhoneLeg` (the orchestrator's `PhoneLeg`),
the TwiML the phone leg hears, and how Twilio's call events map to transfer outcomes.

Flow (webhooks in control.twilio_webhooks):
  start     → Twilio dials the number (ring timeout, status callbacks, optional AMD).
  answered  → whisper: the summary brief (`<Say>`), then `<Gather>` "press 1 / press 2".
  1         → with LIVEKIT_SIP_URI: `<Dial><Sip>` into the caller's LiveKit room; the
              orchestrator hands the call over once that SIP participant is audible.
              Without it: the transfer ends `failed`, saying bridging needs SIP.
  2         → `declined`; silence twice → `timed_out`; busy → `declined`;
              no-answer / voicemail → `timed_out`; failed / canceled → `failed`;
              hang-up during the whisper → `target_left`. The caller is back with A.

All TwiML comes from the SDK's builders, so text (the brief) is XML-escaped by them.

Per-transfer leg state (call SID, last status, brief) lives in a small SQLite file of
its own (`<DATA_DIR>/phone_legs.sqlite3`), next to the webhook replay log: after a
restart, Twilio's next webhook still finds its transfer's leg, and `stop()` can still
hang up a call placed before the restart.

One outbound call per transfer: the leg's row (keyed by transfer id) is claimed before
Twilio is asked to dial, so `start()` and any number of `dial_once()` (the API's
`POST /api/twilio/dial`, repeated or concurrent) place one `calls.create` between them;
the others answer with that call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from control.store import SqliteFile
from functions.errors import ConfigError, Conflict, ProviderTimeout
from functions.models import CallSummary, DialRequest, DialResult, Transfer, TransferState
from functions.services import Services
from functions.telephony.telephony import dial_phone, normalize_e164, webhook_url

log = logging.getLogger(__name__)
S = TransferState

BRIEF_MAX_CHARS = 1200  # well under <Say>'s 4,096-character limit, and ~1.5 min of speech
GATHER_TIMEOUT_S = 8
MAX_PROMPTS = 2
ENDED_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
DIAL_WAIT_S = 15.0  # how long a repeated dial waits for the first one's call SID
MACHINE = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})

INTRO = "Warm transfer request."
PROMPT = "Press 1 to accept the caller, or 2 to decline."
REPROMPT = "Sorry, I did not get that. Press 1 to accept the caller, or 2 to decline."
CONNECTING = "Connecting you to the caller now."
DECLINED = "Thank you. The caller stays with the current agent. Goodbye."
NO_INPUT = "No choice was made, so the caller stays with the current agent. Goodbye."
GONE = "This transfer is no longer available. Goodbye."
NO_SIP = (
    "Thank you. Phone calls cannot be connected to the caller on this system yet, "
    "so the caller stays with the current agent. Goodbye."
)
NO_SIP_REASON = "accepted on the phone, but bridging a phone leg into the call needs LIVEKIT_SIP_URI"


# --- text and TwiML ---------------------------------------------------------------------------


def speakable(text: str, limit: int = BRIEF_MAX_CHARS) -> str:
    """Text safe to hand to `<Say>`: no control characters (invalid in XML), bounded length.

    XML metacharacters are left alone on purpose: the TwiML builder escapes them.
    """
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") else c for c in text or "")
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) > limit:
        cut = cleaned[:limit].rsplit(" ", 1)[0] or cleaned[:limit]
        cleaned = cut.rstrip(" ,;:") + "…"
    return cleaned or "No summary is available for this call."


def _gather_twiml(gather_url: str, *lines: str) -> str:
    """`lines` said while one key press is gathered; no key in GATHER_TIMEOUT_S posts an empty result."""
    vr = VoiceResponse()
    g = Gather(
        input="dtmf",
        num_digits=1,
        timeout=GATHER_TIMEOUT_S,
        action=gather_url,
        method="POST",
        action_on_empty_result=True,
    )
    for line in lines:
        g.say(line)
    vr.append(g)
    return str(vr)


def whisper_twiml(gather_url: str, brief: str) -> str:
    """What the answered phone leg hears first: the brief, then the accept/decline prompt."""
    return _gather_twiml(gather_url, INTRO, speakable(brief), PROMPT)


def reprompt_twiml(gather_url: str) -> str:
    return _gather_twiml(gather_url, REPROMPT)


def goodbye_twiml(text: str) -> str:
    vr = VoiceResponse()
    vr.say(text)
    vr.hangup()
    return str(vr)


def hangup_twiml() -> str:
    vr = VoiceResponse()
    vr.hangup()
    return str(vr)


@dataclass(frozen=True)
class SipTarget:
    uri: str
    username: str | None = None
    password: str | None = None


def sip_target(livekit_sip_uri: str, room: str) -> SipTarget:
    """`sip:<room>@<LiveKit SIP host>`: a LiveKit callee dispatch rule puts the leg in `room`.

    LIVEKIT_SIP_URI may be `sip:host`, `sips:host:5061;transport=tls`, or carry digest
    credentials for the LiveKit inbound trunk as `sip:user:password@host`.
    """
    raw = livekit_sip_uri.strip()
    scheme, sep, rest = raw.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        scheme, rest = "sip", raw
    rest = rest.lstrip("/")
    username = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        username, _, pw = userinfo.partition(":")
        password = pw or None
    host = rest
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(;[A-Za-z0-9=._\-]+)*", host):
        raise ValueError("must look like sip:<your-project>.sip.livekit.cloud (optionally sip:user:password@host)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", room):
        raise ValueError(f"room name {room!r} cannot be a SIP user part")
    return SipTarget(uri=f"{scheme.lower()}:{room}@{host}", username=username or None, password=password)


def bridge_twiml(sip: SipTarget, *, caller_id: str, dial_action_url: str, timeout_s: int) -> str:
    """Accept: the phone leg is connected into the caller's LiveKit room over SIP."""
    vr = VoiceResponse()
    vr.say(CONNECTING)
    dial = Dial(caller_id=caller_id, action=dial_action_url, method="POST", timeout=timeout_s, answer_on_bridge=True)
    sip_kwargs = {}
    if sip.username:
        sip_kwargs = {"username": sip.username, "password": sip.password or ""}
    dial.sip(sip.uri, **sip_kwargs)
    vr.append(dial)
    return str(vr)


# --- status mapping -----------------------------------------------------------------------------


def outcome_for_status(call_status: str, current: TransferState, ring_timeout_s: int) -> tuple[S, str] | None:
    """The transfer outcome a phone leg's call status means, or None (no change)."""
    if call_status == "busy":
        return S.declined, "the phone line was busy or the call was rejected"
    if call_status == "no-answer":
        return S.timed_out, f"nobody answered the phone within {ring_timeout_s} s"
    if call_status == "failed":
        return S.failed, "Twilio could not connect the phone call"
    if call_status == "canceled":
        return S.failed, "the phone call was canceled before it was answered"
    if call_status == "completed":
        if current in (S.idle, S.consulting):
            return S.target_left, "the phone leg hung up before accepting"
        if current is S.completing:
            return S.failed, "the phone leg hung up before it reached the caller"
    return None


def outcome_for_answered_by(answered_by: str) -> tuple[S, str] | None:
    if answered_by in MACHINE:
        return S.timed_out, "the call went to voicemail"
    if answered_by == "fax":
        return S.failed, "a fax machine answered"
    return None


# --- per-transfer leg state ------------------------------------------------------------------------


@dataclass
class Leg:
    transfer_id: str
    to: str
    brief: str
    call_sid: str = ""
    status: str = "dialing"
    answered_by: str = ""
    closing: bool = False  # our TwiML is hanging up (or already did): no REST hang-up needed

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES


_SCHEMA = """
CREATE TABLE IF NOT EXISTS legs (
    transfer_id TEXT PRIMARY KEY, to_number TEXT NOT NULL, brief TEXT NOT NULL, call_sid TEXT NOT NULL,
    status TEXT NOT NULL, answered_by TEXT NOT NULL, closing INTEGER NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS legs_by_sid ON legs(call_sid);
CREATE TABLE IF NOT EXISTS webhook_seen (
    key TEXT PRIMARY KEY, status_code INTEGER, body TEXT, at REAL NOT NULL
);
"""


class LegStore(SqliteFile):
    """Phone legs and the webhook replay log, in their own small SQLite file."""

    def __init__(self, path: Path | str, *, connection: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        super().__init__(path, connection=connection)
        with self._locked():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def create(self, leg: Leg) -> bool:
        """Insert `leg` unless its transfer has one already; True if this call inserted it."""
        with self._locked():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO legs VALUES (?,?,?,?,?,?,?,?)",
                (leg.transfer_id, leg.to, leg.brief, leg.call_sid, leg.status, leg.answered_by, 0, time.time()),
            )
            return cur.rowcount == 1

    def put(self, leg: Leg) -> None:
        with self._locked():
            self._db.execute(
                "INSERT OR REPLACE INTO legs VALUES (?,?,?,?,?,?,?,?)",
                (
                    leg.transfer_id,
                    leg.to,
                    leg.brief,
                    leg.call_sid,
                    leg.status,
                    leg.answered_by,
                    int(leg.closing),
                    time.time(),
                ),
            )

    def get(self, transfer_id: str) -> Leg | None:
        with self._locked():
            row = self._db.execute(
                "SELECT transfer_id, to_number, brief, call_sid, status, answered_by, closing FROM legs "
                "WHERE transfer_id=?",
                (transfer_id,),
            ).fetchone()
        return Leg(*row[:6], closing=bool(row[6])) if row else None

    def update(self, transfer_id: str, **fields: object) -> Leg | None:
        leg = self.get(transfer_id)
        if leg is None:
            return None
        for k, v in fields.items():
            setattr(leg, k, v)
        self.put(leg)
        return leg

    # Replay log: a webhook key is claimed once; its response is kept for Twilio's retries.
    def claim(self, key: str) -> bool:
        with self._locked():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO webhook_seen VALUES (?,?,?,?)", (key, None, None, time.time())
            )
            return cur.rowcount == 1

    def save_response(self, key: str, status_code: int, body: str) -> None:
        with self._locked():
            self._db.execute("UPDATE webhook_seen SET status_code=?, body=? WHERE key=?", (status_code, body, key))

    def response(self, key: str) -> tuple[int, str] | None:
        with self._locked():
            row = self._db.execute("SELECT status_code, body FROM webhook_seen WHERE key=?", (key,)).fetchone()
        return (row[0], row[1]) if row and row[0] is not None else None

    def release(self, key: str) -> None:
        with self._locked():
            self._db.execute("DELETE FROM webhook_seen WHERE key=?", (key,))


# --- the PhoneLeg -------------------------------------------------------------------------------------


class TwilioPhoneLeg:
    """`PhoneLeg` over Twilio. `dial` places the call (the app passes its functions gateway's
    `dial_phone`, so with FUNCTIONS_BACKEND=modal a transfer dials on Modal); without it, this
    process's dialer (`services.dialer`, built on first use)."""

    def __init__(
        self,
        services: Services,
        *,
        db_path: Path | str | None = None,
        dial: Callable[[DialRequest], Awaitable[DialResult]] | None = None,
        connection: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self._dial = dial
        if self.can_bridge:
            try:
                sip_target(self.settings.livekit_sip_uri, "call-check")
            except ValueError as e:
                raise ConfigError(f"LIVEKIT_SIP_URI: {e}") from e
        self.legs = LegStore(db_path or (self.settings.data_dir / "phone_legs.sqlite3"), connection=connection)

    def close(self) -> None:
        self.legs.close()

    @property
    def can_bridge(self) -> bool:
        """Whether an accepted phone leg can join the caller's call (LIVEKIT_SIP_URI set).

        Without it the UI should say a phone transfer needs SIP: only the whisper and the
        accept/decline answer work, and accepting ends the transfer `failed`.
        """
        return bool(self.settings.livekit_sip_uri.strip())

    # --- PhoneLeg protocol ------------------------------------------------------------------
    def normalize(self, number: str) -> str:
        return normalize_e164(number)

    async def start(self, transfer: Transfer, summary: CallSummary) -> None:
        await self.dial_once(transfer, brief=speakable(summary.brief))

    async def dial_once(
        self,
        transfer: Transfer,
        dial: Callable[[DialRequest], Awaitable[DialResult]] | None = None,
        *,
        brief: str | None = None,
    ) -> DialResult:
        """The transfer's one outbound call: placed now if the transfer has no leg yet, else the
        call its leg placed already (waiting for its SID if that dial is still under way).

        `dial` places the call (default: the one this leg was built with, else this process's
        dialer; the API passes the functions gateway's). A dial Twilio refused leaves no call, and
        is not retried here: the transfer rolls back and a new one dials afresh."""
        tid = transfer.transfer_id
        leg = Leg(transfer_id=tid, to=transfer.target, brief=brief or speakable(""))
        if not self.legs.create(leg):
            return await self._existing_call(transfer)
        req = DialRequest(to=transfer.target, transfer_id=tid)
        dial = dial or self._dial
        try:
            result = await dial(req) if dial is not None else await asyncio.to_thread(dial_phone, req, self.services)
        except BaseException:
            self.legs.update(tid, status="failed")  # no call exists; `_existing_call` says so
            raise
        # A status callback may already have moved the leg on; keep the newer status.
        current = self.legs.get(tid)
        status = current.status if current and current.status != "dialing" else result.status
        self.legs.update(tid, call_sid=result.call_sid, status=status)
        log.info("transfer %s: dialing %s as %s", tid, result.to, result.call_sid)
        return DialResult(call_sid=result.call_sid, to=result.to, status=status)

    async def _existing_call(self, transfer: Transfer) -> DialResult:
        deadline = time.monotonic() + DIAL_WAIT_S
        while True:
            leg = self.legs.get(transfer.transfer_id)
            if leg is not None and leg.call_sid:
                return DialResult(call_sid=leg.call_sid, to=leg.to, status=leg.status)
            if leg is None or leg.ended:  # ended without a call SID: the dial itself failed
                raise Conflict(f"transfer {transfer.transfer_id} could not dial its phone target; start a new transfer")
            if time.monotonic() > deadline:
                raise ProviderTimeout(f"transfer {transfer.transfer_id} is still dialing; try again in a moment")
            await asyncio.sleep(0.05)

    async def stop(self, transfer: Transfer) -> None:
        leg = self.legs.get(transfer.transfer_id)
        if leg is None or not leg.call_sid or leg.ended or leg.closing:
            return
        self.legs.update(transfer.transfer_id, closing=True)
        await asyncio.to_thread(self.services.dialer.hangup, leg.call_sid)

    def room_identity(self, transfer: Transfer) -> str | None:
        """LiveKit names inbound SIP participants `sip_<calling number>`; the bridge's
        `<Dial callerId>` is the target's own number, so the identity is predictable."""
        if not self.can_bridge:
            return None
        return f"sip_{transfer.target}"

    # --- used by the webhooks ------------------------------------------------------------------
    def leg(self, transfer_id: str) -> Leg | None:
        return self.legs.get(transfer_id)

    def mark_closing(self, transfer_id: str) -> None:
        self.legs.update(transfer_id, closing=True)

    def record_status(self, transfer_id: str, call_sid: str, status: str, answered_by: str = "") -> Leg | None:
        leg = self.legs.get(transfer_id)
        if leg is None:
            return None
        fields: dict[str, object] = {}
        if status and not leg.ended:  # a late 'ringing' never un-ends a leg
            fields["status"] = status
        if answered_by:
            fields["answered_by"] = answered_by
        if call_sid and not leg.call_sid:
            fields["call_sid"] = call_sid
        return self.legs.update(transfer_id, **fields) if fields else leg

    def url(self, name: str, transfer_id: str, **query: str) -> str:
        return webhook_url(self.settings, name, transfer_id, **query)

    def bridge(self, transfer: Transfer) -> str:
        sip = sip_target(self.settings.livekit_sip_uri, transfer.call_room)
        return bridge_twiml(
            sip,
            caller_id=transfer.target,
            dial_action_url=self.url("dial", transfer.transfer_id),
            timeout_s=max(5, int(self.settings.join_timeout_s)),
        )
