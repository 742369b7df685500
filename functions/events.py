"""The messages browsers get over LiveKit data (topic `warm-transfer`): one pydantic model per `type`.

On the wire each is `{"v": 1, "type": "<type>", "at": <unix time>, "payload": {…}}`. The control plane
sends them (`control.rooms.Rooms.post`) and publishes them in process on the app context's event bus
(`control.bus`: presence, the call queue, the UI's desks follow it); the consult job sends
`transfer.summary` itself. `AnyNotification` parses any of them by its `type`.

These models are the one source of the protocol: `python -m functions.events` writes its JSON schema
(docs/events.schema.json) and the browser's constants (ui/static/protocol.js, the ES module `PROTOCOL`);
tests/unit/test_events.py fails while either is stale, or while a script spells a type out itself.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_serializer

from functions.models import (
    PROTOCOL_VERSION,
    TOPIC,
    AgentPublic,
    BriefingExchange,
    CallStatus,
    CallSummary,
    TransferEvent,
    TransferInfo,
    TransferState,
)

TRANSFER_PREFIX = "transfer."  # `transfer.<state>`: a transfer entered <state>


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Fields left out of the message when they are None (absent, rather than null, on the wire).
    omit_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name in self.omit_none:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class Notification(BaseModel):
    """What every message has; `type` says which of the models below it is."""

    v: int = PROTOCOL_VERSION
    type: str
    at: float = Field(default_factory=time.time)


# --- transfers (the lobby: A and B; the consult room) ---------------------------------------------


class TransferPayload(_Payload):
    omit_none = ("summary", "join_room")

    transfer: TransferInfo = Field(description="the transfer, without its event log")
    event: TransferEvent | None = Field(description="the event that led here")
    summary: CallSummary | None = Field(None, description="for B: the call's summary (offered, consulting)")
    join_room: str | None = Field(None, description="the room B joins now (completing, introducing)")


TransferStateType = Literal[
    "transfer.idle",
    "transfer.consulting",
    "transfer.completing",
    "transfer.introducing",
    "transfer.completed",
    "transfer.cancelled",
    "transfer.declined",
    "transfer.timed_out",
    "transfer.target_left",
    "transfer.caller_left",
    "transfer.failed",
]


class TransferChanged(Notification):
    """A transfer entered a state (`transfer.<state>`)."""

    type: TransferStateType
    payload: TransferPayload

    @classmethod
    def of(cls, state: TransferState, payload: TransferPayload) -> TransferChanged:
        return cls(type=f"{TRANSFER_PREFIX}{state.value}", payload=payload)  # type: ignore[arg-type]


class OfferMovedPayload(_Payload):
    transfer_id: str
    to: str = Field(description="the agent or queue the transfer is offered to now")


class OfferMoved(Notification):
    """To the agent the offer left (it declined, did not answer or left): it went on to `to`."""

    type: Literal["transfer.offer_moved"] = "transfer.offer_moved"
    payload: OfferMovedPayload


class SummaryCardPayload(_Payload):
    transfer_id: str
    summary: CallSummary


class SummaryCard(Notification):
    """The consult job's card for B, sent when B joins the consult room."""

    type: Literal["transfer.summary"] = "transfer.summary"
    payload: SummaryCardPayload


class QAPayload(_Payload):
    transfer_id: str
    call_id: str
    exchange: BriefingExchange


class QAAnswered(Notification):
    """B asked the briefing a question; its answer (to A and B in the consult room)."""

    type: Literal["transfer.qa"] = "transfer.qa"
    payload: QAPayload


class PhoneLegPayload(_Payload):
    transfer_id: str
    call_id: str
    target: str
    call_sid: str
    status: str = Field(description="Twilio's call status")
    answered_by: str = Field(description="Twilio's answering-machine detection")
    state: TransferState


class PhoneLegChanged(Notification):
    """The outbound phone leg of a transfer to a number changed (to A, in the lobby)."""

    type: Literal["transfer.phone_leg"] = "transfer.phone_leg"
    payload: PhoneLegPayload


# --- calls (the caller's room; the lobby) ----------------------------------------------------------


class CallStatusPayload(_Payload):
    call_id: str
    status: CallStatus
    agent: str | None = Field(description="whom the caller talks to")


class CallStatusChanged(Notification):
    """What the caller's side may know: status and who they talk to, never the summary."""

    type: Literal["call.status"] = "call.status"
    payload: CallStatusPayload


class QueuePlace(_Payload):
    place: int = Field(description="1 = next")
    estimated_wait_s: int | None = Field(description="None: no agent takes calls")


class CallQueuePayload(_Payload):
    call_id: str
    ringing: str | None = Field(description="the agent it rings now; None: waiting in the queue")
    queue: QueuePlace | None


class CallQueued(Notification):
    """To a waiting caller: whom it rings, its place in line, the estimated wait."""

    type: Literal["call.queue"] = "call.queue"
    payload: CallQueuePayload


class CallIncomingPayload(_Payload):
    call_id: str
    caller_name: str
    offered_to: str | None = Field(description="the agent it rings; None: every available agent sees it")


class CallIncoming(Notification):
    """A waiting call rings an agent (the lobby)."""

    type: Literal["call.incoming"] = "call.incoming"
    payload: CallIncomingPayload


class CallWithdrawnPayload(_Payload):
    call_id: str
    reason: str


class CallWithdrawn(Notification):
    """A waiting call no longer rings (answered, no answer, the caller left)."""

    type: Literal["call.withdrawn"] = "call.withdrawn"
    payload: CallWithdrawnPayload


class CallsChangedPayload(_Payload):
    cause: str = Field(description="the message type (or call.new) that changed the calls")


class CallsChanged(Notification):
    """The agents' dashboards refresh (sent by the UI to the lobby)."""

    type: Literal["calls.changed"] = "calls.changed"
    payload: CallsChangedPayload


class PresencePayload(_Payload):
    agents: list[AgentPublic] = Field(description="each agent's public view (control.presence)")


class PresenceChanged(Notification):
    """An agent's presence changed (the lobby)."""

    type: Literal["presence.changed"] = "presence.changed"
    payload: PresencePayload


# --- live transcription (the call's agent; the consult room) ---------------------------------------


class SegmentPayload(_Payload):
    omit_none = ("transfer_id",)

    call_id: str
    transfer_id: str | None = Field(None, description="set for the consult room's captions")
    speaker: str
    text: str
    start: float
    end: float


class TranscriptSegmentAdded(Notification):
    """One caption."""

    type: Literal["transcript.segment"] = "transcript.segment"
    payload: SegmentPayload


class TranscriptStatusPayload(_Payload):
    call_id: str
    behind_s: float
    dropped: int
    dropped_s: float


class TranscriptStatusChanged(Notification):
    """How far the call's captions are behind (to the call's agent)."""

    type: Literal["transcript.status"] = "transcript.status"
    payload: TranscriptStatusPayload


class SummaryUpdatedPayload(_Payload):
    call_id: str
    summary: CallSummary


class SummaryUpdated(Notification):
    """The call's rolling summary (to the call's agent only, never the caller)."""

    type: Literal["summary.updated"] = "summary.updated"
    payload: SummaryUpdatedPayload


MESSAGES: tuple[type[Notification], ...] = (
    TransferChanged,
    OfferMoved,
    SummaryCard,
    QAAnswered,
    PhoneLegChanged,
    CallStatusChanged,
    CallQueued,
    CallIncoming,
    CallWithdrawn,
    CallsChanged,
    PresenceChanged,
    TranscriptSegmentAdded,
    TranscriptStatusChanged,
    SummaryUpdated,
)
AnyNotification = Annotated[
    TransferChanged
    | OfferMoved
    | SummaryCard
    | QAAnswered
    | PhoneLegChanged
    | CallStatusChanged
    | CallQueued
    | CallIncoming
    | CallWithdrawn
    | CallsChanged
    | PresenceChanged
    | TranscriptSegmentAdded
    | TranscriptStatusChanged
    | SummaryUpdated,
    Field(discriminator="type"),
]
NOTIFICATIONS: TypeAdapter[Any] = TypeAdapter(AnyNotification)


# --- what the other languages get ------------------------------------------------------------------


def message_types() -> list[str]:
    """Every `type` a message may have, from the models."""
    out: list[str] = []
    for model in MESSAGES:
        out += list(model.model_fields["type"].annotation.__args__)  # type: ignore[union-attr]
    return out


def js_name(message_type: str) -> str:
    """`transfer.offer_moved` → `TRANSFER_OFFER_MOVED`."""
    return message_type.replace(".", "_").upper()


def render_schema() -> str:
    # The validation schema: what a receiver may rely on (fields the senders leave out when None,
    # e.g. a transfer message's `summary`, are the optional ones).
    schema = NOTIFICATIONS.json_schema(mode="validation")
    schema["title"] = "Warm transfer notifications (LiveKit data, topic warm-transfer)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_js() -> str:
    constants = {"VERSION": PROTOCOL_VERSION, "TOPIC": TOPIC, "TRANSFER_PREFIX": TRANSFER_PREFIX}
    constants |= {js_name(t): t for t in message_types()}
    body = "".join(f"  {k}: {json.dumps(v)},\n" for k, v in constants.items())
    return (
        "// Generated by `python -m functions.events` from functions/events.py: do not edit.\n"
        "// The protocol of the LiveKit data messages (topic, version, every message type), an ES module.\n"
        "export const PROTOCOL = Object.freeze({\n"
        f"{body}"
        "});\n"
    )


ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "docs" / "events.schema.json"
JS_PATH = ROOT / "ui" / "static" / "protocol.js"


def main() -> None:
    """Write the schema and the JS constants (run after changing a model here)."""
    SCHEMA_PATH.write_text(render_schema())
    JS_PATH.write_text(render_js())
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)} and {JS_PATH.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
