"""Offline summarizer on scripted calls, plus the fallback and rolling wrappers (no model, no network).

Every scripted call in tests/fixtures/calls (one JSON file each) has:
- `segments`: the transcript; optional `caller_typed_name`: the name the caller typed when joining;
- `expected`: caller_name, identifiers (each must be among the summary's identifiers *and* be said in
  the brief, compared without separators), amounts, dates, sentiment (allowed values) and a few
  `*_contains` checks of single fields;
- `must`: strings (case-insensitive) that must appear somewhere in the summary: the brief or any field
  (name, identifiers, issue, key facts, already tried, requested outcome);
- `must_not`: strings (case-insensitive) that must appear nowhere in it: injected instructions, the
  speech-to-text spelling of a typed name, a number the caller corrected, things nobody said.
The summary must also not contain a word that is neither in the transcript (or the typed name) nor one
of the summarizer's fixed labels, and its brief must be at most 40 words."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from functions.errors import ProviderError
from functions.models import CallSummary, SummarizeRequest, TranscriptSegment
from functions.services import Services
from functions.settings import Settings
from functions.summary.offline_patterns import denoise
from functions.summary.offline_summary import INJECTION_NOTE, digits_view, third_person
from functions.summary.summarization import (
    FallbackSummarizer,
    OfflineSummarizer,
    RollingSummary,
    in_thread,
    make_summarizer,
    summarize,
)

pytestmark = pytest.mark.unit

CALLS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "calls"
CALLS = sorted(CALLS_DIR.glob("*.json"))

# The only words the offline summarizer may add: fixed labels and the first → third person rewrite.
LABEL_WORDS = set(
    [
        "caller",
        "name",
        "not",
        "given",
        "issue",
        "request",
        "says",
        "wants",
        "needs",
        "asks",
        "you",
        "to",
        "already",
        "tried",
        "is",
        "frustrated",
        "angry",
        "billing",
        "technical",
        "cancellation",
        "account",
        "access",
        "order",
        "or",
        "delivery",
        "ticket",
        "case",
        "invoice",
        "they",
        "their",
        "them",
        "theirs",
        "they're",
        "they've",
        "they'd",
        "they'll",
        "were",
        "weren't",
        "themselves",
        "no",
        "conversation",
        "was",
        "captured",
        "before",
        "this",
        "transfer",
        "speech",
        "from",
        "the",
        "agent",
        "sees",
        "does",
        "can",
        "can't",
        "cannot",
        "could",
        "will",
        "has",
        "read",
        "back",
        "called",
        "repeat",
        "contact",
        "declined",
        "accepted",
        "offer",
        "yes",
        "happy",
        "calling",
        "about",
        "since",
        "then",
        "yet",
        "confirmed",
    ]
) | set(re.findall(r"[a-z0-9']+", INJECTION_NOTE.lower()))


def load_call(path: Path) -> tuple[list[TranscriptSegment], dict]:
    data = json.loads(path.read_text())
    return [TranscriptSegment(**s) for s in data["segments"]], data["expected"]


def load_full(path: Path) -> dict:
    return json.loads(path.read_text())


def summarize_call(data: dict) -> CallSummary:
    segments = [TranscriptSegment(**s) for s in data["segments"]]
    return OfflineSummarizer().summarize(segments, known_name=data.get("caller_typed_name"))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", digits_view(text).lower().replace("’", "'"))


def said(segments: list[TranscriptSegment]) -> str:
    """The transcript as the summarizer reads it: fillers ("um") and stutters dropped, digit words as digits."""
    return digits_view(" ".join(denoise(seg.text) for seg in segments))


def alnum(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", s.lower())


def summary_text(s: CallSummary) -> str:
    return " ".join(
        [s.caller_name or "", s.issue, s.requested_outcome, s.brief, *s.key_facts, *s.already_tried]
        + [i.value for i in s.identifiers]
    )


@pytest.fixture(scope="module")
def summaries() -> dict[str, tuple[list[TranscriptSegment], dict, CallSummary]]:
    out = {}
    for path in CALLS:
        data = load_full(path)
        segments, expected = load_call(path)
        out[path.stem] = (segments, expected, summarize_call(data))
    return out


def test_there_are_at_least_forty_varied_scripted_calls() -> None:
    calls = [load_full(p) for p in CALLS]
    kinds = {c["kind"] for c in calls}
    assert len(CALLS) >= 40
    assert {
        "billing",
        "technical",
        "cancellation",
        "angry",
        "no_name",
        "long",
        "empty",
        "silence",
        "non_english",
        "injection",
        "insurance",
        "medical",
        "spelled",
        "similar_numbers",
        "stt_noise",
        "agent_facts",
        "typed_name",
    } <= kinds
    assert all(isinstance(c["must"], list) and isinstance(c["must_not"], list) for c in calls)


def must_score(data: dict, s: CallSummary) -> tuple[list[str], list[str]]:
    """(must strings missing from the summary, must_not strings found in it)."""
    text = summary_text(s).lower()
    return [m for m in data["must"] if m.lower() not in text], [m for m in data["must_not"] if m.lower() in text]


def test_offline_targets_over_all_scripted_calls(summaries) -> None:
    """The bench targets (bench/summary_quality.py): recall of `must` ≥ 95 %, no `must_not`, every brief ≤ 40 words."""
    total = found = 0
    inventions: list[tuple[str, str]] = []
    long_briefs = []
    for path in CALLS:
        data = load_full(path)
        s = summaries[path.stem][2]
        missing, invented = must_score(data, s)
        total += len(data["must"])
        found += len(data["must"]) - len(missing)
        inventions += [(path.stem, m) for m in invented]
        if len(s.brief.split()) > 40:
            long_briefs.append(path.stem)
    assert total >= 200
    assert found / total >= 0.95, f"recall {found}/{total}"
    assert not inventions
    assert not long_briefs


@pytest.mark.parametrize("call", [p.stem for p in CALLS])
def test_summary_has_most_of_the_calls_must_facts_and_none_of_its_must_not(call: str, summaries) -> None:
    data = load_full(CALLS_DIR / f"{call}.json")
    missing, invented = must_score(data, summaries[call][2])
    assert len(missing) <= max(1, len(data["must"]) // 4), f"missing {missing} from {summaries[call][2]}"
    assert not invented, f"must_not found: {invented}"


@pytest.mark.parametrize("call", [p.stem for p in CALLS])
def test_summary_contains_every_expected_fact(call: str, summaries) -> None:
    _, expected, s = summaries[call]
    assert s.source == "offline"
    assert s.caller_name == expected["caller_name"]
    found = {alnum(i.value) for i in s.identifiers}
    for ident in expected["identifiers"]:
        assert alnum(ident) in found, f"identifier {ident!r} missing from {s.identifiers}"
        assert alnum(ident) in alnum(s.brief), f"identifier {ident!r} not said in the brief {s.brief!r}"
    facts = " ".join([s.issue, s.requested_outcome, *s.key_facts, *s.already_tried])
    for amount in expected["amounts"]:
        assert amount in facts, f"amount {amount!r} missing from {facts!r}"
    for date in expected["dates"]:
        assert date.lower() in facts.lower(), f"date {date!r} missing from {facts!r}"
    assert s.sentiment in expected["sentiment"]
    for part in expected["issue_contains"]:
        assert part.lower() in s.issue.lower()
    for part in expected["requested_contains"]:
        assert part.lower() in s.requested_outcome.lower()
    for part in expected["tried_contains"]:
        assert any(part.lower() in t.lower() for t in s.already_tried), s.already_tried


@pytest.mark.parametrize("call", [p.stem for p in CALLS])
def test_summary_invents_nothing(call: str, summaries) -> None:
    segments, _, s = summaries[call]
    typed = load_full(CALLS_DIR / f"{call}.json").get("caller_typed_name") or ""
    transcript_words = set(words(" ".join(seg.text for seg in segments) + " " + said(segments) + " " + typed))
    invented = [w for w in words(summary_text(s)) if w not in transcript_words and w not in LABEL_WORDS]
    assert not invented, f"words not in the transcript: {invented}"
    transcript_alnum = alnum(said(segments))
    for ident in s.identifiers:
        assert alnum(ident.value) in transcript_alnum


@pytest.mark.parametrize("call", [p.stem for p in CALLS])
def test_brief_is_at_most_40_words_and_names_the_caller(call: str, summaries) -> None:
    _, expected, s = summaries[call]
    assert 0 < len(s.brief.split()) <= 40
    if expected["caller_name"]:
        assert s.brief.startswith(f"{expected['caller_name']},") or s.brief.startswith(f"{expected['caller_name']}.")
    elif segments_of(call):
        assert s.brief.startswith(("Caller, no name given", "No speech from the caller"))


def segments_of(call: str) -> list[dict]:
    return load_full(CALLS_DIR / f"{call}.json")["segments"]


def test_prompt_injection_does_not_leak(summaries) -> None:
    _, _, s = summaries["prompt_injection"]
    fields = " ".join([s.brief, s.issue, s.requested_outcome, *s.already_tried, *s.key_facts]).lower()
    for phrase in load_full(CALLS_DIR / "prompt_injection.json")["must_not"]:
        assert phrase not in fields, phrase
    assert INJECTION_NOTE in s.key_facts  # the agent is told something was left out
    assert s.brief.startswith("Jordan Lee, invoice INV-2024-0031.")


def test_empty_call_says_nothing_was_captured(summaries) -> None:
    _, _, s = summaries["empty_call"]
    assert s.identifiers == [] and s.key_facts == [] and s.caller_name is None
    assert s.brief == "No conversation was captured before this transfer."


def test_long_call_keeps_opening_identifiers_and_closing_ask(summaries) -> None:
    segments, _, s = summaries["very_long_call"]
    assert len(segments) > 100
    assert s.identifiers[0].kind == "account"
    assert "technician" in s.brief


def test_third_person_rewrite() -> None:
    assert third_person("I was charged twice on my card and I'm upset") == (
        "they were charged twice on their card and they're upset"
    )


def test_entry_point_uses_the_services_summarizer() -> None:
    segments, _ = load_call(CALLS_DIR / "billing_double_charge.json")
    services = Services(Settings(_env_file=None, summarizer_provider="offline"))
    result = summarize(SummarizeRequest(segments=segments), services)
    assert result.caller_name == "Maria Lopez" and result.source == "offline"


def test_factory_picks_offline_without_openai_and_fallback_with_it() -> None:
    assert isinstance(make_summarizer(Settings(_env_file=None)), OfflineSummarizer)
    s = make_summarizer(Settings(_env_file=None, openai_base_url="http://127.0.0.1:9/v1", llm_timeout_s=1.5))
    assert isinstance(s, FallbackSummarizer) and s.timeout_s == 1.5


# --- fallback wrapper (with in-process stand-ins for the LLM) -----------------------------------


class _Failing:
    name = "stub-failing"

    def summarize(self, segments):
        raise ProviderError("boom")


class _Slow:
    name = "stub-slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def summarize(self, segments):
        time.sleep(self.delay)
        return CallSummary(brief="late", source="llm")


class _Counting:
    name = "stub-llm"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def summarize(self, segments):
        with self.lock:
            self.calls.append(len(segments))
        time.sleep(self.delay)
        return CallSummary(brief=f"llm summary of {len(segments)} segments", source="llm")


def _billing() -> list[TranscriptSegment]:
    return load_call(CALLS_DIR / "billing_double_charge.json")[0]


def test_fallback_on_provider_error_is_marked() -> None:
    fb = FallbackSummarizer(_Failing(), timeout_s=2)
    s = fb.summarize(_billing())
    assert s.source == "offline_fallback"
    assert s.caller_name == "Maria Lopez"
    assert isinstance(fb.last_error, ProviderError)


def test_fallback_on_timeout_returns_within_the_timeout() -> None:
    fb = FallbackSummarizer(_Slow(3.0), timeout_s=0.3)
    t = time.monotonic()
    s = fb.summarize(_billing())
    assert time.monotonic() - t < 1.0
    assert s.source == "offline_fallback" and "4471-9902" in s.brief
    assert fb.last_error is not None and fb.last_error.retryable


# --- rolling summary -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bg_loop():
    """Peer: none; an event loop in a thread, where the LLM refreshes run (tests/support/loop_thread.py)."""
    from tests.support.loop_thread import LoopThread

    with LoopThread() as loop:
        yield loop


@pytest.mark.parametrize("call", ["billing_double_charge", "very_long_call", "prompt_injection", "non_english_mixed"])
def test_rolling_offline_summary_matches_summarizing_from_scratch(call: str) -> None:
    segments, _ = load_call(CALLS_DIR / f"{call}.json")
    rolling = RollingSummary()  # no LLM refresh: the offline extraction only
    for i in range(0, len(segments), 2):
        rolling.update(segments[i : i + 2])
    assert rolling.current == OfflineSummarizer().summarize(segments)


def test_rolling_current_is_instant_during_a_long_call() -> None:
    segments, _ = load_call(CALLS_DIR / "very_long_call.json")
    rolling = RollingSummary()
    for seg in segments:
        rolling.update([seg])
    t = time.perf_counter()
    for _ in range(1000):
        current = rolling.current
    assert (time.perf_counter() - t) / 1000 < 0.001
    assert current.caller_name == "Grace Kim"


def test_rolling_with_llm_is_ready_before_the_llm_answers_and_coalesces(bg_loop) -> None:
    llm = _Counting(delay=0.3)
    rolling = RollingSummary(in_thread(llm), loop=bg_loop)
    segments = _billing()
    for seg in segments:
        s = rolling.update([seg])  # returns at once with the offline summary
        assert s.source == "offline_fallback"
    assert rolling.wait_idle(5)
    assert rolling.current.source == "llm"
    assert rolling.current.brief == f"llm summary of {len(segments)} segments"
    assert llm.calls[-1] == len(segments)
    assert len(llm.calls) < len(segments)  # updates during a refresh were coalesced


def test_rolling_keeps_the_offline_summary_when_the_llm_fails(bg_loop) -> None:
    rolling = RollingSummary(in_thread(FallbackSummarizer(_Failing(), timeout_s=1)), loop=bg_loop)
    rolling.update(_billing())
    assert rolling.wait_idle(5)
    assert rolling.current.source == "offline_fallback"
    assert rolling.current.caller_name == "Maria Lopez"
