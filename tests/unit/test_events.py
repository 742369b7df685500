"""The data messages are one typed model per `type` (functions.events), and the other languages get
the protocol from those models, never by copying it: the JSON schema and the browser's constants
are generated, and a script that spells out a message type itself fails here. Peer: none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from functions import events as ev
from functions.models import (
    AgentPublic,
    AgentState,
    BriefingExchange,
    CallStatus,
    CallSummary,
    QuestionKind,
    TransferInfo,
    TransferState,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "ui" / "static"
SUMMARY = CallSummary(caller_name="Ann", issue="a refund", brief="Ann wants a refund.")
TRANSFER = TransferInfo(
    transfer_id="t1", call_id="c1", call_room="call-c1", consult_room="consult-t1", from_agent="a", target="b"
)
AGENT_B = AgentPublic(
    identity="agent-b", name="B", state=AgentState.available, label="Available", available=True, busy=False, queues=[]
)
EXAMPLES: list[ev.Notification] = [
    ev.TransferChanged.of(
        TransferState.consulting,
        ev.TransferPayload(transfer=TRANSFER, event=None, summary=SUMMARY),
    ),
    ev.OfferMoved(payload=ev.OfferMovedPayload(transfer_id="t1", to="agent-c")),
    ev.SummaryCard(payload=ev.SummaryCardPayload(transfer_id="t1", summary=SUMMARY)),
    ev.QAAnswered(
        payload=ev.QAPayload(
            transfer_id="t1",
            call_id="c1",
            exchange=BriefingExchange(
                transfer_id="t1",
                asked_by="agent-b",
                question="why?",
                answer="A refund.",
                kind=QuestionKind.wants,
                found=True,
                addressed=True,
            ),
        )
    ),
    ev.PhoneLegChanged(
        payload=ev.PhoneLegPayload(
            transfer_id="t1",
            call_id="c1",
            target="+15550100",
            call_sid="CA1",
            status="ringing",
            answered_by="",
            state=TransferState.consulting,
        )
    ),
    ev.CallStatusChanged(payload=ev.CallStatusPayload(call_id="c1", status=CallStatus.on_hold, agent=None)),
    ev.CallQueued(payload=ev.CallQueuePayload(call_id="c1", ringing=None, queue={"place": 2, "estimated_wait_s": 60})),
    ev.CallIncoming(payload=ev.CallIncomingPayload(call_id="c1", caller_name="Ann", offered_to="agent-b")),
    ev.CallWithdrawn(payload=ev.CallWithdrawnPayload(call_id="c1", reason="no answer")),
    ev.CallsChanged(payload=ev.CallsChangedPayload(cause="call.new")),
    ev.PresenceChanged(payload=ev.PresencePayload(agents=[AGENT_B])),
    ev.TranscriptSegmentAdded(payload=ev.SegmentPayload(call_id="c1", speaker="caller", text="hi", start=0, end=1)),
    ev.TranscriptStatusChanged(payload=ev.TranscriptStatusPayload(call_id="c1", behind_s=4, dropped=0, dropped_s=0)),
    ev.SummaryUpdated(payload=ev.SummaryUpdatedPayload(call_id="c1", summary=SUMMARY)),
]


def test_every_message_has_an_example_here():
    assert {type(m) for m in EXAMPLES} == set(ev.MESSAGES)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: m.type)
def test_a_message_parses_back_as_its_own_model(msg):
    wire = json.dumps(msg.model_dump(mode="json"))
    back = ev.NOTIFICATIONS.validate_json(wire)
    assert type(back) is type(msg) and back == msg
    assert set(json.loads(wire)) == {"v", "type", "at", "payload"} and json.loads(wire)["v"] == 1


def test_absent_optional_fields_are_left_out_not_null():
    """As before the models: a transfer message without a summary has no `summary` key."""
    plain = ev.TransferChanged.of(TransferState.declined, ev.TransferPayload(transfer=TRANSFER, event=None))
    assert set(plain.model_dump(mode="json")["payload"]) == {"transfer", "event"}
    caption = ev.SegmentPayload(call_id="c1", speaker="caller", text="hi", start=0, end=1)
    assert "transfer_id" not in caption.model_dump(mode="json")


def test_a_wrong_payload_is_refused():
    with pytest.raises(ValueError, match="status"):
        ev.CallStatusChanged(payload={"call_id": "c1", "status": "dancing", "agent": None})
    with pytest.raises(ValueError, match="extra"):
        ev.CallWithdrawn(payload={"call_id": "c1", "reason": "x", "secret": "y"})
    with pytest.raises(ValueError, match=r"transfer\.nonsense"):
        ev.NOTIFICATIONS.validate_python({"type": "transfer.nonsense", "payload": {}})


def test_transfer_message_types_are_the_states():
    assert set(ev.TransferStateType.__args__) == {f"{ev.TRANSFER_PREFIX}{s.value}" for s in TransferState}


def test_types_are_unique():
    assert len(ev.message_types()) == len(set(ev.message_types()))


def test_the_generated_files_are_up_to_date():
    """Run `python -m functions.events` after changing functions/events.py."""
    assert ev.SCHEMA_PATH.read_text() == ev.render_schema()
    assert ev.JS_PATH.read_text() == ev.render_js()


def test_the_scripts_spell_no_message_type_themselves():
    types = "|".join(re.escape(t) for t in [*ev.message_types(), ev.TRANSFER_PREFIX, "warm-transfer"])
    quoted = re.compile(rf"""["'`]({types})["'`]""")
    copied = [
        f"{path.relative_to(STATIC)}:{n}: {m.group(1)}"
        for path in sorted(STATIC.rglob("*.js"))
        if path != ev.JS_PATH
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        for m in quoted.finditer(line.split("//")[0])  # comments may name a message
    ]
    assert copied == []


def test_the_scripts_use_only_constants_that_exist():
    names = set(re.findall(r"^\s+([A-Z_]+):", ev.render_js(), re.M))
    used = {
        (path.relative_to(STATIC), name)
        for path in sorted(STATIC.rglob("*.js"))
        for name in re.findall(r"\b(?:P|PROTOCOL)\.([A-Z_]+)\b", path.read_text())
    }
    assert used and {u for u in used if u[1] not in names} == set()


def test_the_modules_using_the_protocol_import_it():
    """protocol.js is an ES module: a module using its constants imports them from it."""
    uses = re.compile(r"\b(?:P|PROTOCOL)\.[A-Z_]+\b")
    imports = re.compile(r'^import \{ PROTOCOL(?: as P)? \} from "(?:\./|\.\./)protocol\.js";', re.M)
    users = [path for path in sorted(STATIC.rglob("*.js")) if uses.search(path.read_text())]
    assert users
    for path in users:
        assert imports.search(path.read_text()), path.relative_to(STATIC)
