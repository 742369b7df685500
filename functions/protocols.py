"""Small Protocols that every provider implements: one cloud, one offline.

Synchronous on purpose: models are CPU-bound and the SDKs have sync clients;
the real-time side runs them in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from functions.models import (
    CallSummary,
    DialRequest,
    DialResult,
    TranscribeResult,
    TranscriptSegment,
)


@dataclass(frozen=True)
class PcmChunk:
    """Mono signed 16-bit little-endian PCM."""

    data: bytes
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.data) / 2 / self.sample_rate


@runtime_checkable
class Transcriber(Protocol):
    name: str

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        """Transcribe mono int16 PCM at any sample rate (8k telephone to 48k WebRTC)."""
        ...


@runtime_checkable
class Summarizer(Protocol):
    name: str

    def summarize(self, segments: list[TranscriptSegment]) -> CallSummary: ...


@runtime_checkable
class Speaker(Protocol):
    name: str

    def synthesize(self, text: str) -> Iterator[PcmChunk]:
        """Yield audio as it is produced, so playback can start before synthesis ends."""
        ...


@runtime_checkable
class Dialer(Protocol):
    name: str

    def dial(self, request: DialRequest, *, status_callback: str, answer_url: str) -> DialResult: ...

    def hangup(self, call_sid: str) -> None: ...
