"""Live transcription inside a job: every conversational speaker's audio in the job's room is
segmented (functions.segmenter, 16 kHz mono frames straight from the SDK), each utterance is
transcribed through the functions gateway (in-process or on Modal), and the segment is reported
to the control plane, which stores it, captions it and rolls the summary.

Per room: a bounded queue of utterances; when it is full the oldest waiting utterance is dropped,
counted and logged (never silently), so the captions stay near real time.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from livekit import rtc

from functions.background import Background
from functions.models import SERVICE_PREFIXES, TranscribeRequest, TranscribeResult, TranscriptSegment, Word
from functions.segmenter import RATE, Segmenter, Utterance

log = logging.getLogger(__name__)
QUEUE_LIMIT = 32  # utterances waiting per room; beyond that we are far behind real time
FRAME_MS = 100

Transcribe = Callable[[TranscribeRequest], Awaitable[TranscribeResult]]
OnSegment = Callable[[TranscriptSegment, float], Awaitable[None]]  # (segment, lag seconds)


@dataclass
class Metrics:
    """Per room: end-of-utterance → segment ready (seconds), drops, queue depth."""

    latencies: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    busy_s: float = 0.0
    dropped: int = 0
    max_queue: int = 0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        return {
            "segments": len(lat),
            "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
            "p95_ms": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))] * 1000 if lat else 0.0,
            "rtf": self.busy_s / self.audio_s if self.audio_s else 0.0,
            "dropped": self.dropped,
            "max_queue": self.max_queue,
        }


class RoomListener:
    """Transcribes every non-service speaker of a connected room."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        caller_identity: str,
        transcribe: Transcribe,
        on_segment: OnSegment,
        on_listening: Callable[[str], None] = lambda _identity: None,
    ) -> None:
        self.room = room
        self.caller_identity = caller_identity
        self._transcribe = transcribe
        self._on_segment = on_segment
        self._on_listening = on_listening
        self.metrics = Metrics()
        self._queue: asyncio.Queue[tuple[str, Utterance, float]] = asyncio.Queue(QUEUE_LIMIT)
        self._background = Background()
        self._t0 = time.monotonic()

    def speaker_label(self, identity: str) -> str:
        return "caller" if identity == self.caller_identity else f"agent:{identity}"

    def start(self) -> RoomListener:
        self.room.on("track_subscribed", self._on_track)
        for p in self.room.remote_participants.values():
            for pub in p.track_publications.values():
                if pub.track is not None:
                    self._on_track(pub.track, pub, p)
        self._background.spawn(self._work())
        return self

    async def aclose(self, *, drain_s: float = 3.0) -> None:
        """Utterances already heard are still transcribed (bounded wait), then everything stops."""
        try:
            await asyncio.wait_for(self._queue.join(), drain_s)
        except TimeoutError:
            log.info("%s: %d utterances left untranscribed at close", self.room.name, self._queue.qsize())
        self._background.cancel()

    def _on_track(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or p.identity.startswith(SERVICE_PREFIXES):
            return  # hold audio and the briefing are not part of the conversation
        self._background.spawn(self._read(track, p.identity))

    async def _read(self, track: rtc.Track, identity: str) -> None:
        seg = Segmenter()
        # 16 kHz mono from the SDK (resampled in Rust): a third of the samples Python would touch at
        # 48 kHz. 100 ms frames: every SDK event is offered to every room queue of the process, so
        # 10 events a second per speaker instead of 100 keeps the worker's loops responsive (at 10 ms
        # frames, rooms connecting beside five transcribed calls timed out in the SDK).
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=FRAME_MS)
        offset = time.monotonic() - self._t0  # the segmenter's clock starts when this track does
        self._on_listening(identity)
        try:
            async for ev in stream:
                for utt in seg.push(bytes(ev.frame.data.cast("B"))):
                    self._enqueue(identity, utt, offset)
        finally:
            if utt := seg.flush():
                self._enqueue(identity, utt, offset)
            await stream.aclose()

    def _enqueue(self, identity: str, utt: Utterance, offset: float) -> None:
        item = (identity, Utterance(utt.pcm, utt.start + offset, utt.end + offset, utt.capped), time.monotonic())
        if self._queue.full():
            # Far behind: drop the oldest waiting utterance, never silently, so new speech stays current.
            old_identity, old, _ = self._queue.get_nowait()
            self._queue.task_done()
            self.metrics.dropped += 1
            log.error(
                "transcription of %s is %d utterances behind; dropped %.1fs from %s",
                self.room.name,
                QUEUE_LIMIT,
                old.end - old.start,
                old_identity,
            )
        self._queue.put_nowait(item)
        self.metrics.max_queue = max(self.metrics.max_queue, self._queue.qsize())

    async def _work(self) -> None:
        while True:
            identity, utt, ended_at = await self._queue.get()
            try:
                await self._one(identity, utt, ended_at)
            except Exception as e:  # a failed utterance is logged; the call goes on
                log.warning("transcription failed in %s: %s", self.room.name, e)
            finally:
                self._queue.task_done()

    async def _one(self, identity: str, utt: Utterance, ended_at: float) -> None:
        t = time.monotonic()
        req = TranscribeRequest(audio=utt.pcm, encoding="pcm_s16le", sample_rate=RATE, language="en")
        result = await self._transcribe(req)
        self.metrics.busy_s += time.monotonic() - t
        self.metrics.audio_s += utt.end - utt.start
        text = result.text.strip()
        if not text:
            return
        seg = TranscriptSegment(
            speaker=self.speaker_label(identity),
            text=text,
            start=round(utt.start, 3),
            end=round(utt.end, 3),
            words=[Word(word=w.word, start=w.start + utt.start, end=w.end + utt.start) for w in result.words],
        )
        lag = time.monotonic() - ended_at
        self.metrics.latencies.append(lag)
        if lag > 5.0:
            log.warning("transcription lag in %s: %.1fs behind real time", self.room.name, lag)
        await self._on_segment(seg, lag)
