"""`LoadAwareTranscriber`: base while the worker keeps up, tiny.en for utterances that queued.

No model here: two slow stand-in transcribers that record which one got each utterance (the
real models and their latency are measured by bench/live_transcription.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.models import TranscribeResult
from functions.stt.transcription import LoadAwareTranscriber

pytestmark = pytest.mark.unit


class Cores:
    """How many utterances both stand-ins transcribe at once."""

    def __init__(self) -> None:
        self.busy = 0
        self.most_busy = 0
        self.lock = threading.Lock()


class SlowTranscriber:
    def __init__(self, name: str, seconds: float, cores: Cores | None = None) -> None:
        self.name = name
        self.seconds = seconds
        self.cores = cores or Cores()

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        with self.cores.lock:
            self.cores.busy += 1
            self.cores.most_busy = max(self.cores.most_busy, self.cores.busy)
        time.sleep(self.seconds)
        with self.cores.lock:
            self.cores.busy -= 1
        return TranscribeResult(text="hello", words=[], duration_s=1.0, engine=self.name)


def test_idle_worker_uses_the_accurate_model():
    stt = LoadAwareTranscriber(SlowTranscriber("base", 0.01), SlowTranscriber("tiny", 0.01), slots=2, fast_after_s=0.5)
    results = [stt.transcribe(b"\0\0" * 160, 16000) for _ in range(3)]
    assert [(r.engine, r.fallback) for r in results] == [("base", False)] * 3
    assert stt.name == "base+tiny"


def test_utterances_that_queue_for_a_core_go_to_the_fast_model_and_never_exceed_the_slots():
    cores = Cores()
    base, tiny = SlowTranscriber("base", 0.6, cores), SlowTranscriber("tiny", 0.05, cores)
    stt = LoadAwareTranscriber(base, tiny, slots=2, fast_after_s=0.3)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(stt.transcribe, b"\0\0" * 160, 16000) for _ in range(2)]
        deadline = time.monotonic() + 5
        while cores.busy < 2 and time.monotonic() < deadline:  # both cores taken before the rest arrive
            time.sleep(0.01)
        futures += [pool.submit(stt.transcribe, b"\0\0" * 160, 16000) for _ in range(4)]
        results = [f.result(timeout=10) for f in futures]
    engines = [r.engine for r in results]
    # Two got a core at once (base); the four that waited behind them went to tiny.en, and say so (the
    # summarizer trusts base's reading of a number over tiny.en's).
    assert engines.count("base") == 2, engines
    assert engines.count("tiny") == 4, engines
    assert all(r.fallback == (r.engine == "tiny") for r in results)
    assert cores.most_busy == 2  # one utterance per core, whichever model


def test_pick_rule():
    stt = LoadAwareTranscriber(SlowTranscriber("base", 0), SlowTranscriber("tiny", 0), slots=2, fast_after_s=0.5)
    assert stt.pick(0.1, 0).name == "base"
    assert stt.pick(0.6, 0).name == "tiny"  # waited for a core
    assert stt.pick(0.0, 2).name == "tiny"  # as many waiting behind it as there are cores
