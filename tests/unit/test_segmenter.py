"""Voice-activity segmentation on audio made in the test: real speech from espeak-ng
when available, and synthetic bursts for the timing rules."""

from __future__ import annotations

import numpy as np
import pytest

from media.segmenter import RATE, Segmenter

pytestmark = pytest.mark.unit


def burst(seconds: float, hz: float = 300.0, level: float = 0.2) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    # Speech-like: a voiced tone with syllable-rate amplitude modulation.
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (np.sin(2 * np.pi * hz * t) * env * level * 32767).astype("<i2").tobytes()


def silence(seconds: float, noise: float = 0.001) -> bytes:
    rng = np.random.default_rng(0)
    return (rng.normal(0, noise, int(seconds * RATE)) * 32767).astype("<i2").tobytes()


def test_two_utterances_split_on_silence_with_timings():
    seg = Segmenter(silence_ms=600)
    audio = silence(1.0) + burst(1.5) + silence(1.0) + burst(0.8) + silence(1.0)
    utts = []
    for i in range(0, len(audio), 640):  # 20 ms pushes, like a live stream
        utts += seg.push(audio[i : i + 640])
    assert len(utts) == 2
    assert utts[0].start == pytest.approx(1.0 - 0.2, abs=0.06)  # 200 ms pre-roll
    assert utts[0].end == pytest.approx(2.5 + 0.1, abs=0.08)
    assert utts[1].start == pytest.approx(3.5 - 0.2, abs=0.06)
    assert not utts[0].capped


def test_short_pause_inside_an_utterance_does_not_split_it():
    seg = Segmenter(silence_ms=600)
    utts = seg.push(silence(0.5) + burst(1.0) + silence(0.3) + burst(1.0) + silence(1.0))
    assert len(utts) == 1 and utts[0].end - utts[0].start > 2.0


def test_long_speech_is_capped():
    seg = Segmenter(max_ms=15000)
    utts = seg.push(burst(32.0) + silence(1.0))
    assert [u.capped for u in utts] == [True, True, False]
    assert all(u.end - u.start <= 15.0 + 1e-6 for u in utts)


def test_clicks_and_silence_are_not_utterances():
    seg = Segmenter(min_speech_ms=200)
    assert seg.push(silence(2.0) + burst(0.06) + silence(2.0)) == []
    assert seg.flush() is None


def test_flush_returns_speech_in_progress():
    seg = Segmenter()
    assert seg.push(burst(1.0)) == []
    utt = seg.flush()
    assert utt is not None and utt.end - utt.start == pytest.approx(1.0, abs=0.05)
