"""B questioning the briefing, without audio: the offline question matcher (every question kind, "I
don't know that from the call" when the call does not say, never an invented name or number, on all
the scripted calls), the addressing rule's text and timing sides, the transcript a consult job carries,
and the control plane storing and forwarding each exchange. No model, no network: the control plane's
rooms are a recording stand-in (`SentTo`)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from control.bus import EventBus
from control.consult_qa import ConsultQA
from control.store import Store
from functions.events import Notification
from functions.media_protocol import QAReport
from functions.models import (
    BriefingExchange,
    BriefingQuestion,
    Call,
    CallSummary,
    QuestionKind,
    TranscriptSegment,
    Transfer,
    TransferState,
)
from functions.qa.briefing_qa import (
    DONT_KNOW,
    TRANSCRIPT_MAX_CHARS,
    OfflineAnswerer,
    addressed,
    answer_question,
    asks,
    bound_transcript,
    classify,
)
from functions.services import Services
from functions.settings import Settings
from functions.summary.offline_patterns import denoise
from functions.summary.offline_summary import digits_view
from functions.summary.summarization import OfflineSummarizer
from media.listen import RoomListener
from tests.unit.test_summarizer_offline import CALLS_DIR, load_full

pytestmark = pytest.mark.unit
K = QuestionKind


def call(name: str) -> tuple[CallSummary, list[TranscriptSegment], dict]:
    data = load_full(CALLS_DIR / f"{name}.json")
    segments = [TranscriptSegment(**s) for s in data["segments"]]
    return OfflineSummarizer().summarize(segments, known_name=data.get("caller_typed_name")), segments, data


def ask(name: str, question: str, previous: str = "") -> str:
    summary, segments, _ = call(name)
    req = BriefingQuestion(question=question, summary=summary, transcript=segments, previous_answer=previous)
    return OfflineAnswerer().answer(req).answer


# --- what is asked ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What's the account number?", K.identifier),
        ("Briefing what's the order number?", K.identifier),  # as Whisper writes "Briefing, …"
        ("briefing. Their phone?", K.identifier),
        ("What's their email?", K.identifier),
        ("What did they already try?", K.tried),
        ("Have they tried restarting it?", K.tried),
        ("Repeat that.", K.repeat),
        ("Can you say that again?", K.repeat),
        ("Sorry?", K.repeat),
        ("How angry are they?", K.mood),
        ("How are they?", K.mood),
        ("Spell the name.", K.spell),
        ("How do you spell the last name?", K.spell),
        ("What's the caller's name?", K.name),
        ("Who is the caller?", K.name),
        ("How much were they charged?", K.amount),
        ("When did that happen?", K.date),
        ("What do they want?", K.wants),
        ("What's the problem?", K.issue),
        ("What's wrong with their account?", K.issue),
        ("Anything else I should know?", K.facts),
        ("Give me the summary again.", K.summary),
        ("Is it raining outside?", K.unknown),
    ],
)
def test_classify_every_kind(question: str, kind: QuestionKind) -> None:
    assert classify(question) is kind


def test_address_and_question_form() -> None:
    assert addressed("Briefing, what's the account number?") == ("what's the account number?", True)
    assert addressed("Hey briefing what did they try") == ("what did they try", True)
    assert addressed("Briefing.") == ("Briefing.", False)  # the name alone asks nothing
    assert addressed("The brief was clear, thanks.") == ("The brief was clear, thanks.", False)
    assert asks("What's the account number?") and asks("Repeat that.") and asks("Spell the name.")
    assert asks("so how angry are they") and asks("Did they restart it?")
    assert not asks("Okay, the account number, got it.") and not asks("Thanks, I'll take it from here.")


# --- every kind answered from the call ------------------------------------------------------------------------


def test_every_kind_on_the_billing_call() -> None:
    """billing_double_charge: Maria Lopez, account 4471-9902, $89.99 twice on March 3rd, called last week."""
    c = "billing_double_charge"
    assert ask(c, "What's the account number?") == "The account number is 4471-9902."
    assert ask(c, "Briefing, what's the account number?") == "The account number is 4471-9902."
    assert "called last week" in ask(c, "What did they already try?")
    assert ask(c, "How angry are they?") == "They're frustrated. They already called last week and nobody fixed it."
    assert ask(c, "Spell the name.") == "Maria Lopez is spelled M, A, R, I, A. L, O, P, E, Z."
    assert ask(c, "Spell the last name.") == "Lopez is spelled L, O, P, E, Z."
    assert ask(c, "What's their name?") == "The caller is Maria Lopez."
    assert "$89.99" in ask(c, "How much were they charged?")
    assert "March 3rd" in ask(c, "When was that?")
    assert ask(c, "What do they want?") == "They want a refund of the duplicate charge."
    assert "charged $89.99 twice" in ask(c, "What's the problem?")
    summary, _, _ = call(c)
    assert ask(c, "Repeat that.") == summary.brief  # nothing answered yet: the brief again
    assert ask(c, "Repeat that.", previous="The account number is 4471-9902.") == "The account number is 4471-9902."
    assert ask(c, "Give me the summary.") == summary.brief


def test_identifiers_by_kind_and_by_the_word_the_caller_used() -> None:
    assert "TK-55102" in ask("angry_repeat_caller", "What's the ticket number?")
    assert ask("spelled_name_and_number", "What's the account number?") == "The account number is 44719902."
    assert ask("order_damaged_delivery", "What's the order number?") == "The order number is 77-41209."
    # The word the caller used for an "other" identifier ("policy", "prescription") finds it.
    assert ask("insurance_auto_claim", "What's the claim number?") == "The claim number is CL-30219."
    assert ask("insurance_auto_claim", "What's the policy number?") == "The policy number is AU-771204."


def test_what_was_tried_comes_from_the_agents_question_and_the_callers_answer() -> None:
    answer = ask("outage_qa_reinstall", "What did they already try?")
    assert answer.startswith("They already tried:") and re.search(r"reinstall", answer, re.I), answer


def test_the_typed_name_is_the_name_spoken_and_spelled() -> None:
    _, _, data = call("typed_name_vs_stt")
    typed = data["caller_typed_name"]
    assert ask("typed_name_vs_stt", "What's the caller's name?") == f"The caller is {typed}."
    assert ask("typed_name_vs_stt", "Spell the first name.").startswith(typed.split()[0])


# --- "I don't know that from the call" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "question"),
    [
        ("billing_double_charge", "What's their email?"),
        ("billing_double_charge", "What's the policy number?"),
        ("caller_never_names", "What's the caller's name?"),
        ("caller_never_names", "Spell the name."),
        ("angry_repeat_caller", "What did they already try?"),
        ("empty_call", "What's the account number?"),
        ("empty_call", "How angry are they?"),
        ("empty_call", "What do they want?"),
        ("silence_fillers_only", "What's the problem?"),
        ("billing_double_charge", "Is it raining outside?"),
    ],
)
def test_what_the_call_does_not_say_is_not_known(name: str, question: str) -> None:
    summary, segments, _ = call(name)
    result = answer_question(
        BriefingQuestion(question=question, summary=summary, transcript=segments), Services(Settings())
    )
    assert result.answer.startswith(DONT_KNOW) and not result.found, result


def test_a_missing_identifier_kind_names_the_ones_the_call_has() -> None:
    answer = ask("billing_double_charge", "What's the order number?")
    assert answer == f"{DONT_KNOW} It has account number 4471-9902."


def test_instructions_in_the_transcript_are_never_answered_back() -> None:
    for name in ("prompt_injection", "prompt_injection_role_play", "prompt_injection_summary_override"):
        _, _, data = call(name)
        for q in ("Anything else?", "What did they say?", "What do they want?", "What's going on?", "Repeat that."):
            answer = ask(name, q).lower()
            for bad in data["must_not"]:
                assert bad.lower() not in answer, (name, q, answer)
            assert "ignore" not in answer and "instruction" not in answer, (name, q, answer)


QUESTIONS = [
    "What's the account number?",
    "What's the order number?",
    "What's their phone number?",
    "What's their email?",
    "What did they already try?",
    "Repeat that.",
    "How angry are they?",
    "Spell the name.",
    "What's their name?",
    "How much was it?",
    "When did it happen?",
    "What do they want?",
    "What's the problem?",
    "Anything else?",
    "Did they mention the router?",
    "Was there a refund?",
]
LABELS = {
    "I",
    "The",
    "They",
    "They're",
    "They'd",
    "They've",
    "They'll",
    "Them",
    "It",
    "From",
    "Not",
    "Agent",
    "Repeat",
    "Their",
    "Caller",
    "Already",
    "Wants",
}


@pytest.mark.parametrize("path", sorted(CALLS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_no_answer_invents_a_name_or_a_number(path: Path) -> None:
    """On every scripted call, every digit and every capitalized word an answer says is in the call (its
    transcript or the typed name) or in its summary (whose own words the summarizer's tests check against
    the call): the matcher copies, it never writes facts."""
    summary, segments, data = call(path.stem)
    said = " ".join([s.text for s in segments] + [data.get("caller_typed_name") or ""])
    # Digits as the summarizer reads them: spoken digit words too ("three three oh nine, um, two …").
    digits = re.sub(r"\D", "", digits_view(said) + " ".join(digits_view(denoise(s.text)) for s in segments))
    fields = summary.model_dump_json().lower()  # its words are checked against the call by the summarizer's tests
    words = {w.lower() for w in re.findall(r"[A-Za-zÀ-ÿ']+", said)}
    previous = ""
    for q in QUESTIONS:
        result = OfflineAnswerer().answer(
            BriefingQuestion(question=q, summary=summary, transcript=segments, previous_answer=previous)
        )
        previous = result.answer
        for run in re.findall(r"\d+", re.sub(r"(?<=\d)[\s,.-]+(?=\d)", "", digits_view(result.answer))):
            assert run in digits, (path.stem, q, result.answer)
        for w in re.findall(r"\b[A-Z][a-zà-ÿ']+\b", result.answer):
            assert w in LABELS or w.lower() in words or w.lower() in fields, (path.stem, q, w)
        assert len(result.answer.split()) <= 45


# --- the addressing rule: who spoke when ------------------------------------------------------------------------


class Heard:
    """A room listener's timing state only (when each identity was last heard), for the rule's timing side."""

    quiet_besides = RoomListener.quiet_besides

    def __init__(self) -> None:
        self.t0 = time.monotonic() - 100.0
        self.voice_at: dict[str, float] = {}


def qa_for(target: str = "agent-b"):
    from functions.media_protocol import ConsultJob
    from media.briefing_qa import BriefingQA

    summary, segments, _ = call("billing_double_charge")
    spec = ConsultJob(
        call_id="c1",
        caller_identity="caller-c1",
        control_url="http://127.0.0.1:9",
        transfer_id="t1",
        target=target,
        summary=summary,
        transcript=segments,
    )
    return BriefingQA(spec, gateway=None, speaker=None, reporter=None, timeout_s=1.0)  # type: ignore[arg-type]


def test_a_question_to_the_briefing_is_b_s_addressed_or_asked_in_quiet() -> None:
    qa, room = qa_for(), Heard()
    start = 90.0  # B's utterance starts 90 s into the listener's clock
    seg = lambda who, text: TranscriptSegment(speaker=f"agent:{who}", text=text, start=start, end=start + 1.5)  # noqa: E731
    # Nobody else spoke: a question about the call is for the briefing.
    assert qa.wants(seg("agent-b", "What's the account number?"), room) == ("What's the account number?", False)
    # A's speech is never a question to the briefing, however it is put.
    assert qa.wants(seg("agent-a", "Briefing, what's the account number?"), room) is None
    # Not a question, or not about the call: B talking to A.
    assert qa.wants(seg("agent-b", "Okay, the account number, got it."), room) is None
    assert qa.wants(seg("agent-b", "How was your weekend?"), room) is None
    # A spoke just before (or during): B's question is for A ...
    room.voice_at["agent-a"] = room.t0 + start - 0.5
    assert qa.wants(seg("agent-b", "What's the account number?"), room) is None
    # ... unless B addresses the briefing by name.
    assert qa.wants(seg("agent-b", "Briefing, what's the account number?"), room) == (
        "what's the account number?",
        True,
    )
    # A last spoke well before B began: quiet again.
    room.voice_at["agent-a"] = room.t0 + start - 3.0
    assert qa.wants(seg("agent-b", "How angry are they?"), room) == ("How angry are they?", False)


# --- what the consult job carries ----------------------------------------------------------------------------


def test_a_long_transcript_is_bounded_keeping_its_opening_and_latest_part() -> None:
    segs = [
        TranscriptSegment(speaker="caller", text=f"Sentence {i} " + "word " * 40, start=i, words=[]) for i in range(800)
    ]
    kept = bound_transcript(segs)
    assert sum(len(s.text) for s in kept) <= TRANSCRIPT_MAX_CHARS
    assert kept[0].text.startswith("Sentence 0 ") and kept[-1].text.startswith("Sentence 799 ")
    many = [TranscriptSegment(speaker="caller", text=f"ok {i}") for i in range(5000)]  # short, many
    kept = bound_transcript(many)
    assert len(kept) <= 400 and kept[0].text == "ok 0" and kept[-1].text == "ok 4999"
    _, short, _ = call("billing_double_charge")
    assert [s.text for s in bound_transcript(short)] == [s.text for s in short]


# --- the control plane stores and forwards each exchange --------------------------------------------------------


class SentTo:
    """Rooms, as far as ConsultQA uses them: records what would be sent to which room and people."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Notification, list[str] | None]] = []

    async def send(self, room: str, message: Notification, identities: list[str] | None = None) -> bool:
        self.sent.append((room, message, identities))
        return True


def test_the_control_plane_stores_each_exchange_and_tells_a_and_b() -> None:
    store, rooms, emitted = Store(":memory:"), SentTo(), []
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1"))
    store.add_transfer(
        Transfer(
            transfer_id="t1",
            call_id="c1",
            call_room="call-c1",
            consult_room="consult-t1",
            from_agent="agent-a",
            target="agent-b",
        )
    )
    bus = EventBus()
    bus.subscribe(emitted.append)
    qa = ConsultQA(store, rooms, bus)  # type: ignore[arg-type]
    exchange = BriefingExchange(
        transfer_id="t1",
        asked_by="agent-b",
        question="What's the account number?",
        answer="The account number is 4471-9902.",
        kind=K.identifier,
        found=True,
        addressed=False,
    )
    report = QAReport(call_id="c1", transfer_id="t1", exchange=exchange)
    # Not consulting yet (idle): nothing is stored or sent.
    assert asyncio.run(qa.on_report(report)) is None and store.qa("t1") == [] and rooms.sent == []
    store.transition("t1", TransferState.consulting, actor="agent-a")
    assert asyncio.run(qa.on_report(report)) == exchange
    assert store.qa("t1") == [exchange]
    ((room, msg, to),) = rooms.sent
    assert (room, msg.type, to) == ("consult-t1", "transfer.qa", ["agent-a", "agent-b"])
    assert msg.payload.exchange.answer == "The account number is 4471-9902." and emitted == [msg]
    # Another call's report about this transfer is not taken.
    other = report.model_copy(update={"call_id": "c2"})
    assert asyncio.run(qa.on_report(other)) is None and len(store.qa("t1")) == 1
    store.transition("t1", TransferState.cancelled, actor="agent-a")
    assert asyncio.run(qa.on_report(report)) is None and len(store.qa("t1")) == 1


# --- what live speech-to-text makes of an identifier ------------------------------------------------------------


@pytest.mark.parametrize(
    "segments",
    [
        # The caller paused before the digits: the segmenter cut the utterance after "is".
        ["Hi, my name is Sarah Johnson and my account number is", "447-192."],
        # Whisper's homophone on WebRTC audio (seen in the integration tier).
        ["Hi, my name is Sarah Johnson and my count number is 447-192."],
    ],
)
def test_the_account_number_survives_how_speech_to_text_cut_or_heard_it(segments: list[str]) -> None:
    segs = [TranscriptSegment(speaker="caller", text=t) for t in segments]
    summary = OfflineSummarizer().summarize(segs)
    assert [(i.kind, i.value) for i in summary.identifiers] == [("account", "447-192")]
    req = BriefingQuestion(question="What's the account number?", summary=summary, transcript=segs)
    assert OfflineAnswerer().answer(req).answer == "The account number is 447-192."


def test_an_answer_is_spoken_in_pieces_the_first_one_short() -> None:
    from media.briefing_qa import speakable_pieces

    assert speakable_pieces("The account number is 447-192.") == ["The account number is", "4 4 7, 1 9 2."]
    assert speakable_pieces("Sarah Lee is spelled S, A, R, A, H. L, E, E.") == [
        "Sarah Lee is spelled",
        "S, A, R, A, H.",
        "L, E, E.",
    ]
    assert speakable_pieces("They're frustrated.") == ["They're frustrated."]
    assert speakable_pieces("They already tried: restarted the router twice.") == [
        "They already tried:",
        "restarted the router twice.",
    ]


def test_what_was_tried_is_not_repeated_as_a_fact() -> None:
    """What the caller already did, said with a count ("twice"), is told once: under Tried, not as a fact too."""
    said = [
        "Hello, this is Maria Lopez. My order four four one seven arrived damaged.",
        "I already emailed the seller twice. I would like a replacement sent this week please.",
    ]
    summary = OfflineSummarizer().summarize([TranscriptSegment(speaker="caller", text=t) for t in said])
    assert summary.already_tried == ["they already emailed the seller twice."]
    assert not any("emailed" in f for f in summary.key_facts), summary.key_facts
    assert "Already tried: emailed the seller twice." in summary.brief
