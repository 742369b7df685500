"""The one Protocol every text-to-speech provider implements (offline: piper, espeak-ng; cloud: OpenAI).

Synchronous on purpose: models are CPU-bound and the SDKs have sync clients;
the real-time side runs them in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class PcmChunk:
    """Mono signed 16-bit little-endian PCM."""

    data: bytes
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.data) / 2 / self.sample_rate


@runtime_checkable
class Speaker(Protocol):
    name: str

    def synthesize(self, text: str) -> Iterator[PcmChunk]:
        """Yield audio as it is produced, so playback can start before synthesis ends."""
        ...
