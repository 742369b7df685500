"""B questioning the briefing: latency and accuracy across the three planes.

Peers: the bench session's livekit-server, its media worker process (the consult job; Whisper base and
piper in the worker's model host), the control-plane endpoint, and realtime-SDK participants in this
process: a caller (piper voice) who says CALLER_LINES, A, and B asking QUESTIONS (piper voice) one at a
time in the consult, while nobody else speaks. No LLM: the offline question matcher answers.

Per question:
  heard_ms        end of B's question (its last sample leaving B's microphone) → the answer's first
                  audible frame at B: what B waits
  parts           from the job's report (`QATimings`): the segmenter's end-of-utterance silence, the
                  utterance closed → its text (queue + Whisper in the model host), the answer (gateway
                  → matcher), the first piece of speech (piper in the model host), closed → first frame
  matcher_us      the offline matcher alone, in this process: a call's first question (it extracts the
                  transcript) and the next ones (the extraction is kept)
Accuracy: the answer's text has the expected value (`correct`), and so does the answer B heard,
transcribed by Whisper base here after the run (`heard_correct`).

Run: .venv/bin/python -m pytest bench/test_qa_latency.py -s   (BENCH_ROUNDS=2 asks each question twice)
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time

import pytest

from functions.models import BriefingQuestion
from functions.qa.briefing_qa import OfflineAnswerer
from functions.settings import load_settings
from functions.stt.transcription import WhisperTranscriber
from functions.tts.speech import PiperSpeaker
from tests.ai.helpers import synth
from tests.integration.conftest import running_orchestrator
from tests.integration.test_briefing_qa import Consult

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
CALLER_LINES = [
    "Hi, my name is Sarah Johnson and my account number is 4 4 7 1 9 2.",
    "I was charged twice for my internet bill, eighty nine dollars each time.",
    "I already restarted the router two times and it still drops every evening.",
    "This is the third time I'm calling and I'm really frustrated. I want a refund for this month.",
]
# (question, what the answer must contain: a regex over its letters and digits only, lower case)
QUESTIONS = [
    ("What's the account number?", "447192"),
    ("What did they already try?", "restart"),
    ("How angry are they?", "frustrat|angry"),
    ("What's the caller's name?", "sarahjohnson"),
    ("Spell the first name.", "sarah"),
    ("Repeat that.", "sarah"),
    ("What do they want?", "refund"),
    ("What's the problem?", "charged"),
    ("How much were they charged?", "89"),
    ("What's their email?", "dontknow"),
    ("Briefing, what's the order number?", "dontknow"),
]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def has(text: str, expected: str) -> bool:
    """`expected` found in the text's letters and digits ("4 4 7, 1 9 2" and "447-192" are "447192";
    "S, A, R, A, H" is "sarah")."""
    return bool(re.search(expected, re.sub(r"[^a-z0-9]", "", text.lower())))


@pytest.mark.timeout(1800)
async def test_qa_latency_and_accuracy(control_settings, control_hub, tmp_path):
    # B takes minutes to ask everything before accepting: the accept timeout must not end the consult.
    settings = control_settings.model_copy(
        update={"live_transcription": True, "briefing_qa": True, "accept_timeout_s": 1200.0}
    )
    voices = {"piper": PiperSpeaker(load_settings(data_dir=tmp_path))}
    rows: list[dict] = []
    async with running_orchestrator(settings, control_hub) as orch:
        consult = await Consult().start(orch, voices, CALLER_LINES)
        try:
            await consult.brief()
            await asyncio.sleep(1.0)
            for _round in range(ROUNDS):
                for question, expected in QUESTIONS:
                    asked_at = await consult.b.say(*synth(voices["piper"], question))
                    print(f"{time.strftime('%X')} asked {question!r} (ends in {asked_at - time.monotonic():.2f} s)")
                    started, pcm = await consult.b.speech_after(consult.briefing, asked_at, quiet_s=1.2, timeout=30)
                    stored = await _exchange(orch, consult.t.transfer_id, len(rows) + 1)
                    rows.append(
                        {
                            "question": question,
                            "expected": expected,
                            "heard_ms": (started - asked_at) * 1000,
                            "exchange": stored,
                            "pcm": pcm,
                        }
                    )
                    await asyncio.sleep(1.5)  # a pause before the next question, as a person would
            summary = orch.transcripts.summary_for(consult.call)
            transcript = orch.store.segments(consult.call.call_id)
        finally:
            tid = consult.t.transfer_id
            print(
                "consult transcript:",
                [s.text for s in orch.store.segments(consult.call.call_id, transfer_id=tid, consult=True)],
            )
            await consult.close()

    ears = WhisperTranscriber(load_settings()).load()
    for r in rows:
        r["heard_text"] = ears.transcribe(r["pcm"], 48000).text
    first_us, matcher_us = matcher_timings(summary, transcript)

    print(f"\nB questions the briefing: {len(rows)} questions, one consult, 2-core machine, one worker\n")
    print("| question | answer (text) | answer B heard (Whisper) | correct | heard correct | heard ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ex = r["exchange"]
        r["correct"] = ex is not None and has(ex.answer, r["expected"])
        r["heard_correct"] = has(r["heard_text"], r["expected"])
        answer = ex.answer if ex else "(none stored)"
        print(
            f"| {r['question']} | {answer} | {r['heard_text'].strip()} | {r['correct']} | {r['heard_correct']} "
            f"| {r['heard_ms']:.0f} |"
        )
    parts = {
        "end-of-utterance silence (segmenter)": [r["exchange"].timings.end_of_speech_ms for r in rows if r["exchange"]],
        "utterance closed → text (queue + Whisper base, model host)": [
            r["exchange"].timings.transcribe_ms for r in rows if r["exchange"]
        ],
        "answer (gateway → matcher)": [r["exchange"].timings.answer_ms for r in rows if r["exchange"]],
        "first piece of speech (piper, model host)": [r["exchange"].timings.speech_ms for r in rows if r["exchange"]],
        "utterance closed → first answer frame queued": [
            r["exchange"].timings.first_frame_ms for r in rows if r["exchange"]
        ],
        "end of question → first answer frame heard by B": [r["heard_ms"] for r in rows],
    }
    print("\n| ms | p50 | p95 | max |\n|---|---|---|---|")
    for name, values in parts.items():
        print(f"| {name} | {statistics.median(values):.0f} | {pct(values, 0.95):.0f} | {max(values):.0f} |")
    print(f"| matcher alone, a call's first question (extracts the transcript), µs | {first_us:.0f} | | |")
    print(
        f"| matcher alone, next questions, µs | {statistics.median(matcher_us):.0f} | {pct(matcher_us, 0.95):.0f} "
        f"| {max(matcher_us):.0f} |"
    )
    correct = sum(r["correct"] for r in rows)
    heard_correct = sum(r["heard_correct"] for r in rows)
    print(f"\naccuracy: answer text {correct}/{len(rows)}, answer heard by B {heard_correct}/{len(rows)}")
    assert len(rows) >= 20 and all(r["exchange"] is not None for r in rows)


def matcher_timings(summary, transcript, rounds: int = 20) -> tuple[float, list[float]]:
    """The offline matcher alone, in this process: (µs for a call's first question, which extracts the
    transcript; µs for each next one, the same instance answering, as a worker's does)."""
    answerer = OfflineAnswerer()
    t0 = time.perf_counter()
    answerer.answer(BriefingQuestion(question=QUESTIONS[0][0], summary=summary, transcript=transcript))
    first = (time.perf_counter() - t0) * 1e6
    times = []
    for _ in range(rounds):
        for question, _ in QUESTIONS:
            req = BriefingQuestion(question=question, summary=summary, transcript=transcript)
            t0 = time.perf_counter()
            answerer.answer(req)
            times.append((time.perf_counter() - t0) * 1e6)
    return first, times


async def _exchange(orch, transfer_id: str, n: int, timeout: float = 10.0):
    """The n-th stored exchange of the transfer (the job reports it once the answer starts playing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = orch.store.qa(transfer_id)
        if len(stored) >= n:
            return stored[n - 1]
        await asyncio.sleep(0.1)
    return None
