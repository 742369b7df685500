"""Pydantic models at the edges: what functions take and return, what is stored,
and what is sent to clients as data messages."""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Identities and names travel into tokens, room names and UIs: keep them to a
# conservative alphabet so nothing needs escaping downstream.
IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
ROOM_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
PROTOCOL_VERSION = 1
# Identities the server gives its own participants and callers; no agent may take one.
SERVICE_PREFIXES = ("media-", "hold-", "briefing-", "transcriber-")
RESERVED_PREFIXES = ("caller-", *SERVICE_PREFIXES)


def is_agent_identity(identity: str) -> bool:
    return bool(IDENTITY_RE.match(identity)) and not identity.startswith(RESERVED_PREFIXES)


def _check_identity(v: str) -> str:
    if not IDENTITY_RE.match(v):
        raise ValueError("must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return v


class Role(StrEnum):
    caller = "caller"
    agent = "agent"
    service = "service"


class TokenRequest(BaseModel):
    """Ask for a LiveKit token. Authorization (who may join which room) is the
    orchestrator's job; `mint_token` only turns an authorized request into grants."""

    model_config = ConfigDict(extra="forbid")
    identity: str
    name: str = Field("", max_length=80)
    role: Role
    room: str
    can_publish: bool = True
    can_subscribe: bool = True
    hidden: bool = False
    ttl_s: int | None = Field(None, ge=10, le=3600)

    _v_identity = field_validator("identity")(_check_identity)

    @field_validator("room")
    @classmethod
    def _room(cls, v: str) -> str:
        if not ROOM_RE.match(v):
            raise ValueError("room names are 1-64 lowercase letters, digits or '-'")
        return v


class TokenResponse(BaseModel):
    token: str
    url: str
    room: str
    identity: str
    expires_at: float


class TransferState(StrEnum):
    idle = "idle"
    consulting = "consulting"
    completing = "completing"
    introducing = "introducing"  # three-way: B joins the caller with A still there; A leaves to complete
    completed = "completed"
    cancelled = "cancelled"
    declined = "declined"
    timed_out = "timed_out"
    target_left = "target_left"
    caller_left = "caller_left"
    failed = "failed"


TERMINAL_STATES = frozenset(
    {
        TransferState.completed,
        TransferState.cancelled,
        TransferState.declined,
        TransferState.timed_out,
        TransferState.target_left,
        TransferState.caller_left,
        TransferState.failed,
    }
)


class CallStatus(StrEnum):
    waiting = "waiting"  # caller in the room, no agent yet
    active = "active"  # caller with an agent
    on_hold = "on_hold"  # a transfer is consulting
    ended = "ended"


class Call(BaseModel):
    call_id: str
    room: str
    caller_identity: str
    caller_name: str = ""
    agent_identity: str | None = None
    status: CallStatus = CallStatus.waiting
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class TargetKind(StrEnum):
    agent = "agent"
    phone = "phone"


class AgentState(StrEnum):
    """What an agent is doing, derived from facts (control.presence)."""

    offline = "offline"  # no live connection (not in the agents' lobby)
    away = "away"  # connected, but not taking calls (the agent's choice)
    available = "available"
    ringing = "ringing"  # offered a waiting call, or a transfer's consult not joined yet
    on_call = "on_call"
    consulting = "consulting"  # in a consult: as A (the caller on hold) or as B
    wrap_up = "wrap_up"  # WRAP_UP_S after a call


class AgentPublic(BaseModel):
    """One agent as the UI, the API and `presence.changed` show it (control.presence derives it)."""

    identity: str
    name: str
    state: AgentState
    label: str = Field(description="the state as the UI shows it")
    available: bool = Field(description="may be offered a call or a transfer now")
    busy: bool = Field(description="ringing, on a call, consulting or in wrap-up")
    queues: list[str] = Field(description="the queues (skills) it answers, from AGENT_SKILLS")
    idle_since: float | None = Field(None, description="available since (Unix time); the longest idle is offered first")


class TransferEvent(BaseModel):
    transfer_id: str
    seq: int
    at: float
    from_state: TransferState
    to_state: TransferState
    actor: str
    detail: dict = Field(default_factory=dict)


class TransferInfo(BaseModel):
    """A transfer as agents are told of it (`transfer.*` messages): everything but its event log."""

    transfer_id: str
    call_id: str
    call_room: str
    consult_room: str
    from_agent: str
    target_kind: TargetKind = TargetKind.agent
    target: str  # agent identity or E.164 phone number; in a queue or hunt list, the agent offered now
    # A queue or hunt-list transfer: the ordered entries it was asked for (agent ids, `queue:<name>`);
    # empty for a transfer to one agent or number. A decline or no answer offers it to the next.
    route: list[str] = Field(default_factory=list)
    state: TransferState = TransferState.idle
    reason: str = ""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL_STATES

    @property
    def queue(self) -> str:
        """The queue a queue transfer goes to ("" otherwise): what the caller is told."""
        queues = [e.removeprefix("queue:") for e in self.route if e.startswith("queue:")]
        return queues[0] if len(self.route) == 1 and queues else ""


class Transfer(TransferInfo):
    """A transfer with its event log (the store's row, the API's answer)."""

    events: list[TransferEvent] = Field(default_factory=list)


# --- transcripts and summaries -----------------------------------------------------------


class Word(BaseModel):
    word: str
    start: float
    end: float


class TranscriptSegment(BaseModel):
    """One utterance. `speaker` is `caller` or `agent:<identity>`."""

    speaker: str = Field(max_length=80)
    text: str = Field(max_length=20_000)
    start: float = 0.0
    end: float = 0.0
    words: list[Word] = Field(default_factory=list)
    cut: bool = Field(
        False,
        description="the utterance was cut at the live segmenter's length cap while the speaker went on, "
        "not ended by a pause: its last words may be cut off mid-word",
    )
    fallback: bool = Field(
        False,
        description="transcribed by the quick fallback model (LIVE_WHISPER_FAST_MODEL) because the worker was "
        "behind: it mishears more than the accurate model, spoken numbers most",
    )


class Identifier(BaseModel):
    kind: Literal["account", "order", "ticket", "case", "invoice", "phone", "email", "other"]
    value: str


class CallSummary(BaseModel):
    caller_name: str | None = None
    identifiers: list[Identifier] = Field(default_factory=list)
    issue: str = ""
    key_facts: list[str] = Field(default_factory=list)
    already_tried: list[str] = Field(default_factory=list)
    sentiment: Literal["positive", "neutral", "frustrated", "angry", "unknown"] = "unknown"
    requested_outcome: str = ""
    brief: str = Field("", description="spoken handoff to the receiving agent, at most ~40 words")
    # llm: an LLM summary of every segment; llm+offline: the newest LLM summary plus what the offline
    # extraction found in later segments; offline: no LLM configured; offline_fallback: an LLM is
    # configured but has not answered yet, failed or timed out.
    source: Literal["llm", "llm+offline", "offline", "offline_fallback"] = "offline"


# --- function entry-point models (wrapped 1:1 by modal_deploy.py) ----------------------------


class TranscribeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audio: bytes = Field(description="a WAV file, or raw PCM/μ-law when `encoding` says so")
    encoding: Literal["wav", "pcm_s16le", "mulaw"] = "wav"
    sample_rate: int | None = Field(None, description="required for pcm_s16le and mulaw")
    language: str | None = "en"


class TranscribeResult(BaseModel):
    text: str
    words: list[Word] = Field(default_factory=list)
    duration_s: float
    engine: str
    fallback: bool = Field(False, description="made by the quick fallback model of a load-aware transcriber")


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segments: list[TranscriptSegment] = Field(max_length=5000)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)
    voice: str | None = None


class SpeechResult(BaseModel):
    audio_wav: bytes
    sample_rate: int
    duration_s: float
    engine: str


class DialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(max_length=32)
    transfer_id: str = Field(max_length=64)


class DialResult(BaseModel):
    call_sid: str
    to: str
    status: str


class QuestionKind(StrEnum):
    """What B asked the briefing about (functions.qa.briefing_qa)."""

    identifier = "identifier"
    name = "name"
    spell = "spell"
    tried = "tried"
    mood = "mood"
    issue = "issue"
    wants = "wants"
    amount = "amount"
    date = "date"
    facts = "facts"
    summary = "summary"
    repeat = "repeat"
    unknown = "unknown"


class BriefingQuestion(BaseModel):
    """B's question to the briefing in the consult, with everything the answer may come from."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=500)
    summary: CallSummary
    transcript: list[TranscriptSegment] = Field(default_factory=list, max_length=2000)
    previous_answer: str = Field("", max_length=2000, description='what "repeat that" repeats (the brief at first)')


class BriefingAnswer(BaseModel):
    answer: str = Field(max_length=2000)
    kind: QuestionKind
    found: bool = Field(description="false: the call does not say, and the answer says so")
    source: Literal["offline", "llm", "offline_fallback"] = "offline"


class QATimings(BaseModel):
    """Where the time went between the end of B's question and the answer's first audio frame, in ms."""

    end_of_speech_ms: float = Field(0.0, ge=0, description="the segmenter's end-of-utterance silence")
    transcribe_ms: float = Field(0.0, ge=0, description="utterance closed → its text (queue and Whisper)")
    answer_ms: float = Field(0.0, ge=0, description="the answer (matcher or LLM, through the gateway)")
    speech_ms: float = Field(0.0, ge=0, description="the answer synthesized (piper in the model host)")
    first_frame_ms: float = Field(0.0, ge=0, description="utterance closed → the answer's first frame queued")


class BriefingExchange(BaseModel):
    """One question B asked the briefing and the answer it spoke: reported, stored, shown on the card."""

    transfer_id: str = Field(max_length=64)
    asked_by: str = Field(max_length=64)
    question: str = Field(max_length=500)
    answer: str = Field(max_length=2000)
    kind: QuestionKind
    found: bool
    source: Literal["offline", "llm", "offline_fallback"] = "offline"
    addressed: bool = Field(description='said "briefing, …" (else asked while nobody else spoke)')
    spoken: bool = Field(True, description="false: the answer's speech failed, it is on the card only")
    timings: QATimings = Field(default_factory=QATimings)
    at: float = Field(default_factory=time.time)


# --- data messages to clients ---------------------------------------------------------------

TOPIC = "warm-transfer"  # the LiveKit data topic of every notification (functions.events)


class FunctionStatus(BaseModel):
    """Where one entry point last ran, as the UI shows it."""

    function: str = Field(max_length=64)
    backend: str = Field(
        max_length=200, description='the label of the backend that ran it: "Modal · app X", "local (in-process)", …'
    )
    kind: str = Field(max_length=32, description='"local" or "modal"')
    origin: str = Field("", max_length=64, description='who called it: "control plane" or "media worker"')
    fell_back: bool = False
    reason: str = Field("", max_length=1000, description="why it fell back: the primary backend's error")
    ok: bool = True
    error: str = Field("", max_length=1000, description="why the call failed, when it did")
    at: float = Field(description="when the call ended (Unix time)")
    duration_s: float = Field(0.0, ge=0)

    def same_as(self, other: FunctionStatus | None) -> bool:
        """The same state (ignoring when and how long): what a job reports only when it changes."""
        keys = ("function", "backend", "kind", "origin", "fell_back", "reason", "ok", "error")
        return other is not None and all(getattr(self, k) == getattr(other, k) for k in keys)
