"""The one Protocol every summarizer implements (offline: the extractor; cloud: an LLM).

Synchronous on purpose: models are CPU-bound and the SDKs have sync clients;
the real-time side runs them in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from functions.models import CallSummary, TranscriptSegment


@runtime_checkable
class Summarizer(Protocol):
    name: str

    def summarize(self, segments: list[TranscriptSegment]) -> CallSummary: ...
