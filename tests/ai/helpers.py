"""Audio and scoring helpers for the AI tests and the benchmark."""

from __future__ import annotations

import re

import numpy as np

from functions.audio import mulaw_decode, mulaw_encode, resample
from functions.tts.protocol import Speaker
from functions.tts.textnorm import normalize_for_speech


def synth(speaker: Speaker, text: str) -> tuple[bytes, int]:
    """All of a speaker's chunks joined: (int16 PCM, sample rate)."""
    chunks = list(speaker.synthesize(text))
    assert chunks, f"{speaker.name} produced no audio for {text!r}"
    return b"".join(c.data for c in chunks), chunks[0].sample_rate


def telephone(pcm: bytes, rate: int) -> tuple[bytes, bytes]:
    """8 kHz μ-law as a phone line carries it: (μ-law bytes, the int16 PCM a receiver decodes)."""
    narrow = np.frombuffer(resample(pcm, rate, 8000), dtype="<i2")
    ulaw = mulaw_encode(narrow)
    return ulaw, mulaw_decode(ulaw).tobytes()


def norm_words(text: str) -> list[str]:
    """Words for WER: spoken forms ("$89.99" → "89 dollars and 99 cents"), lower case, no punctuation,
    every digit its own word (so "4471" and "4, 4, 7, 1" compare equal), "3rd" → "3"."""
    s = normalize_for_speech(text).lower()
    s = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", s)
    s = re.sub(r"(\d)", r" \1 ", s)
    return re.findall(r"[a-z0-9']+", s)


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = norm_words(reference), norm_words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
            prev, d[j] = d[j], cur
    return d[len(hyp)] / max(1, len(ref))


def digits(text: str) -> str:
    return "".join(re.findall(r"\d", text))
