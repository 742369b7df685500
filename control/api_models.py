"""Request and response models of the HTTP API (`control.api`).

Every request body is a strict pydantic model (`extra="forbid"`) with size limits, so a
bad request is answered 422 before anything runs. Free text refuses control characters:
nothing a client sends can break a log line, a LiveKit token or a subprocess argument.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from control.names import NAME_MAX_CHARS, normalize_name
from functions.errors import InvalidInput
from functions.models import (
    IDENTITY_RE,
    ROOM_RE,
    AgentPublic,
    Call,
    CallStatus,
    TokenResponse,
    Transfer,
    TransferState,
)

API_VERSION = 1

# Limits: request bodies (bytes, enforced before parsing) and the content inside them.
MAX_BODY_BYTES = 16 * 1024  # every JSON body except transcripts
MAX_TRANSCRIPT_BODY_BYTES = 512 * 1024
MAX_SEGMENTS = 1000
MAX_SEGMENT_CHARS = 4000
MAX_TRANSCRIPT_CHARS = 100_000
MAX_SPEECH_CHARS = 4000

IDENTITY_PATTERN = IDENTITY_RE.pattern
ROOM_PATTERN = ROOM_RE.pattern
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TICKET_PATTERN = r"^[0-9a-f]{64}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces (e.g. a UUID)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Identity = Annotated[str, Field(pattern=IDENTITY_PATTERN, max_length=64, examples=["agent-b"])]
RoomName = Annotated[str, Field(pattern=ROOM_PATTERN, max_length=64, examples=["call-0123456789ab"])]
ObjectId = Annotated[str, Field(pattern=ID_PATTERN, max_length=64, examples=["0123456789ab"])]


def _one_line(v: str) -> str:
    if _CONTROL_OR_NEWLINE.search(v):
        raise ValueError("must not contain control characters or line breaks")
    return v


def _name(v: str, info: ValidationInfo) -> str:
    """A display name: one line (control characters and line breaks refused, as in all free text),
    then normalised for display (`control.names`): NFC, no bidi or zero-width characters."""
    try:
        return normalize_name(_one_line(v), field=info.field_name or "name", max_chars=NAME_MAX_CHARS)
    except InvalidInput as e:
        raise ValueError(e.message) from e


def _text(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("must not contain control characters (tabs and line breaks are fine)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every refusal: 4xx for the client's request, 5xx for a failure on our side."""

    detail: str = Field(description="what was wrong, in one sentence")
    error: str = Field(description="error class, e.g. InvalidInput, Forbidden, NotFound, IllegalTransition")


class ApiInfo(BaseModel):
    api_version: int = API_VERSION
    status: Literal["ok", "starting", "degraded"] = Field(
        description="`degraded`: the server runs, but LiveKit does not answer (see `livekit`)"
    )
    functions_backend: str = ""
    livekit_url: str = ""
    livekit: str = Field(
        "",
        description="`ok`, or `unreachable: <reason>`: an authenticated LiveKit RoomService call answered "
        "(or not) within about 1 s; empty while starting",
    )


# --- calls and rooms ------------------------------------------------------------------------


class CreateCallRequest(_Strict):
    caller_name: str = Field(
        "",
        max_length=NAME_MAX_CHARS,
        description="shown to agents; plain text, one line. Stored NFC-normalised without bidi, zero-width or "
        "format characters and with white space collapsed; empty (or only spaces) = no name; a name with no "
        "visible character left is refused (422)",
    )
    agent_identity: Identity | None = Field(
        None,
        description="start the call already with this agent; needs the agent's credential and must be the "
        "X-Agent-Identity of the request. Omit it for a caller starting a call (it waits for an agent).",
    )

    _v_name = field_validator("caller_name")(_name)


class CreateCallResponse(BaseModel):
    call: Call
    caller_identity: str
    caller_ticket: str = Field(description="the caller's credential for POST /api/tokens; names this call only")


class ParticipantView(BaseModel):
    identity: str
    name: str
    role: Literal["caller", "agent", "service", "phone", "unknown"]
    publishing_audio: bool
    hidden: bool = Field(False, description="invisible to the room's other participants (e.g. the transcriber)")
    joined_at: int = Field(description="unix seconds")


class RoomView(BaseModel):
    room: str
    kind: Literal["call", "consult", "lobby"]
    call_id: str | None = None
    call_status: CallStatus | None = None
    agent_identity: str | None = None
    transfer_id: str | None = None
    transfer_state: TransferState | None = None
    participants: list[ParticipantView]


# --- transfers --------------------------------------------------------------------------------


class InitiateRequest(_Strict):
    call_id: ObjectId
    target: str = Field(
        "",
        max_length=64,
        description="an agent identity, a queue (skill) name, or an E.164 phone number (needs Twilio); "
        "empty for a hunt list",
        examples=["agent-b", "billing", "+14155550123"],
    )
    target_kind: Literal["agent", "phone", "queue", "hunt"] | None = Field(
        None,
        description="default: hunt if `targets` is given, phone if target starts with '+', queue if it starts "
        "with 'queue:', else agent. A queue is offered to its longest-idle available agent; a decline or no "
        "answer (OFFER_TIMEOUT_S) offers it to the next",
    )
    targets: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=10,
        description="a hunt list: agent ids and `queue:<name>`, offered in this order",
        examples=[["agent-b", "queue:billing"]],
    )

    _v_target = field_validator("target")(_one_line)

    @model_validator(mode="after")
    def _has_target(self) -> InitiateRequest:
        if not self.target and not self.targets:
            raise ValueError("give a target (or targets, for a hunt list)")
        return self


class TransferAction(_Strict):
    transfer_id: ObjectId


class DeclineRequest(_Strict):
    transfer_id: ObjectId
    reason: str = Field("", max_length=200)

    _v_reason = field_validator("reason")(_one_line)


class QueueView(BaseModel):
    name: str
    agents: list[str]
    available: int


class AgentsResponse(BaseModel):
    agents: list[AgentPublic]
    queues: list[QueueView]


class AvailabilityRequest(_Strict):
    available: bool = Field(strict=True, description="take calls (offered while connected to the lobby) or not")


class WaitingCallView(BaseModel):
    call_id: str
    room: str
    caller_name: str
    ringing: str | None = Field(description="the agent it rings now; null: waiting in the queue")
    waiting_since: float
    place: int


class WaitingCallsResponse(BaseModel):
    calls: list[WaitingCallView]


class CompleteResponse(BaseModel):
    transfer: Transfer
    join: TokenResponse | None = Field(
        None, description="for the receiving agent: its token for the caller's room, to join right away"
    )


# --- summaries and speech ---------------------------------------------------------------------


class SegmentIn(_Strict):
    speaker: str = Field(
        max_length=80,
        pattern=r"^(caller|agent(:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})?)$",
        description="`caller` or `agent:<identity>`",
        examples=["caller", "agent:agent-a"],
    )
    text: str = Field(max_length=MAX_SEGMENT_CHARS)
    start: float = Field(0.0, ge=0, le=86_400, allow_inf_nan=False, strict=True)
    end: float = Field(0.0, ge=0, le=86_400, allow_inf_nan=False, strict=True)

    _v_text = field_validator("text")(_text)


class SummaryRequest(_Strict):
    segments: list[SegmentIn] = Field(max_length=MAX_SEGMENTS)

    @model_validator(mode="after")
    def _total(self) -> SummaryRequest:
        total = sum(len(s.text) for s in self.segments)
        if total > MAX_TRANSCRIPT_CHARS:
            raise ValueError(f"transcript is {total} characters; at most {MAX_TRANSCRIPT_CHARS}")
        return self


class SpeechApiRequest(_Strict):
    text: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS)
    format: Literal["wav", "pcm"] = Field(
        "wav", description="wav: a streamed WAV file; pcm: raw signed 16-bit little-endian mono"
    )

    _v_text = field_validator("text")(_text)


# --- tokens -------------------------------------------------------------------------------------


class CallerTokenRequest(_Strict):
    role: Literal["caller"]
    call_id: ObjectId
    caller_identity: Identity
    ticket: str = Field(pattern=TICKET_PATTERN, description="the caller_ticket from POST /api/rooms/create")


class AgentTokenRequest(_Strict):
    """The agent is the request's X-Agent-Identity (with its credential)."""

    role: Literal["agent"]
    room: RoomName
    name: str = Field("", max_length=NAME_MAX_CHARS, description="display name; normalised like caller_name")

    _v_name = field_validator("name")(_name)


TokenApiRequest = Annotated[CallerTokenRequest | AgentTokenRequest, Field(discriminator="role")]


# --- telephony ------------------------------------------------------------------------------------


class DialApiRequest(_Strict):
    transfer_id: ObjectId
    to: str = Field(min_length=1, max_length=32, examples=["+14155550123"])

    _v_to = field_validator("to")(_one_line)


class DialApiResponse(BaseModel):
    call_sid: str
    to: str
    status: str


class PhoneCallView(BaseModel):
    transfer_id: str
    call_id: str
    to: str
    state: TransferState
    call_sid: str | None = None
    leg_status: str | None = None


class PhoneCallsResponse(BaseModel):
    calls: list[PhoneCallView]
