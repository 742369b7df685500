"""The one Protocol every speech-to-text provider implements (offline: Whisper; cloud: OpenAI).

Synchronous on purpose: models are CPU-bound and the SDKs have sync clients;
the real-time side runs them in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from functions.models import TranscribeResult


@runtime_checkable
class Transcriber(Protocol):
    name: str

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        """Transcribe mono int16 PCM at any sample rate (8k telephone to 48k WebRTC)."""
        ...
