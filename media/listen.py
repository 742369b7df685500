"""Live transcription inside a job: every conversational speaker's audio in the job's room is
segmented (media.segmenter, 16 kHz mono frames straight from the SDK), each utterance is
transcribed through the functions gateway (in-process or on Modal), and the segment is reported
to the control plane, which stores it, captions it and rolls the summary.

Backpressure, per room: utterances wait in a queue for the worker's one Whisper (the model host);
one that has waited longer than MAX_BEHIND_S is dropped, counted and logged, never silently, so the
captions stay near real time when the worker is overloaded. How far behind the room is (and what was
dropped) is reported to the control plane when it crosses BEHIND_WARN_S either way, on every drop,
and every STATUS_EVERY_S while behind: the agent's desk shows it, and the brief says what it may miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from livekit import rtc

from functions.background import Background
from functions.media_protocol import BEHIND_WARN_S, MAX_BEHIND_S
from functions.models import SERVICE_PREFIXES, TranscribeRequest, TranscribeResult, TranscriptSegment, Word
from media.segmenter import RATE, Segmenter, Utterance

log = logging.getLogger(__name__)
QUEUE_LIMIT = 64  # a hard cap on waiting utterances per room (the age limit normally drops them first)
FRAME_MS = 100
STATUS_EVERY_S = 2.0

Transcribe = Callable[[TranscribeRequest], Awaitable[TranscribeResult]]
OnSegment = Callable[[TranscriptSegment, float], Awaitable[None]]  # (segment, lag seconds)
OnStatus = Callable[["Backlog"], None]


@dataclass
class Metrics:
    """Per room: end-of-utterance → segment ready (seconds), drops, queue depth."""

    latencies: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    busy_s: float = 0.0
    dropped: int = 0
    dropped_s: float = 0.0
    max_queue: int = 0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        return {
            "segments": len(lat),
            "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
            "p95_ms": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))] * 1000 if lat else 0.0,
            "rtf": self.busy_s / self.audio_s if self.audio_s else 0.0,
            "dropped": self.dropped,
            "dropped_s": self.dropped_s,
            "max_queue": self.max_queue,
        }


@dataclass(frozen=True)
class Backlog:
    behind_s: float  # now - end of the oldest utterance not transcribed yet (0: none waiting)
    dropped: int
    dropped_s: float


class UtteranceQueue:
    """A room's utterances between the segmenter and Whisper: one transcribed at a time, the ones
    that waited longer than `max_behind_s` dropped (counted). No LiveKit in here, so the benchmark
    drives exactly this with utterances it times itself."""

    def __init__(
        self,
        name: str,
        transcribe: Callable[[str, Utterance, float], Awaitable[None]],
        metrics: Metrics,
        *,
        max_behind_s: float = MAX_BEHIND_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._transcribe = transcribe  # (identity, utterance, ended_at)
        self.metrics = metrics
        self.max_behind_s = max_behind_s
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, Utterance, float]] = asyncio.Queue(QUEUE_LIMIT)
        # ended_at of the utterance being transcribed: the oldest not transcribed yet (the queue is
        # first in, first out, and `run` takes the next one the moment the last is done).
        self._in_flight: float | None = None

    def put(self, identity: str, utt: Utterance) -> None:
        if self._queue.full():
            self._drop(*self._queue.get_nowait())
            self._queue.task_done()
        self._queue.put_nowait((identity, utt, self._clock()))
        self.metrics.max_queue = max(self.metrics.max_queue, self._queue.qsize())

    def backlog(self) -> Backlog:
        behind = self._clock() - self._in_flight if self._in_flight is not None else 0.0
        return Backlog(round(behind, 1), self.metrics.dropped, round(self.metrics.dropped_s, 1))

    def _drop(self, identity: str, utt: Utterance, ended_at: float) -> None:
        self.metrics.dropped += 1
        self.metrics.dropped_s += utt.end - utt.start
        log.error(
            "transcription of %s is %.1fs behind; dropped %.1fs from %s (%d dropped so far)",
            self.name,
            self._clock() - ended_at,
            utt.end - utt.start,
            identity,
            self.metrics.dropped,
        )

    async def run(self) -> None:
        while True:
            identity, utt, ended_at = await self._queue.get()
            try:
                if self._clock() - ended_at > self.max_behind_s:
                    self._drop(identity, utt, ended_at)
                    continue
                self._in_flight = ended_at
                await self._transcribe(identity, utt, ended_at)
            except Exception as e:  # a failed utterance is logged; the call goes on
                log.warning("transcription failed in %s: %s", self.name, e)
            finally:
                self._in_flight = None
                self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()

    def qsize(self) -> int:
        return self._queue.qsize()


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
        on_status: OnStatus = lambda _backlog: None,
    ) -> None:
        self.room = room
        self.caller_identity = caller_identity
        self._transcribe = transcribe
        self._on_segment = on_segment
        self._on_listening = on_listening
        self._on_status = on_status
        self.metrics = Metrics()
        self.queue = UtteranceQueue(room.name, self._one, self.metrics)
        self._background = Background()
        self.t0 = time.monotonic()  # segment times are seconds since this (monotonic clock)
        self.voice_at: dict[str, float] = {}  # identity → when its speech was last heard (monotonic)
        self._streams: dict[str, rtc.AudioStream] = {}  # track sid → the stream reading it

    def speaker_label(self, identity: str) -> str:
        return "caller" if identity == self.caller_identity else f"agent:{identity}"

    def quiet_besides(self, identity: str, since: float) -> bool:
        """Nobody but `identity` was heard speaking from `since` (monotonic) until now."""
        return all(at < since for who, at in self.voice_at.items() if who != identity)

    def start(self) -> RoomListener:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("track_unsubscribed", self._on_untrack)
        for p in self.room.remote_participants.values():
            for pub in p.track_publications.values():
                if pub.track is not None:
                    self._on_track(pub.track, pub, p)
        self._background.spawn(self.queue.run())
        self._background.spawn(self._watch())
        return self

    async def _watch(self) -> None:
        """Reports the backlog when it crosses BEHIND_WARN_S, on drops, and every STATUS_EVERY_S while behind."""
        shown, shown_at = Backlog(0.0, 0, 0.0), 0.0
        while True:
            await asyncio.sleep(0.5)
            now = self.queue.backlog()
            was_behind, behind = shown.behind_s > BEHIND_WARN_S, now.behind_s > BEHIND_WARN_S
            due = time.monotonic() - shown_at >= STATUS_EVERY_S
            if was_behind != behind or now.dropped != shown.dropped or (behind and due):
                shown, shown_at = now, time.monotonic()
                self._on_status(now)

    async def aclose(self, *, drain_s: float = 3.0) -> None:
        """Utterances already heard are still transcribed (bounded wait), then everything stops."""
        try:
            await asyncio.wait_for(self.queue.join(), drain_s)
        except TimeoutError:
            log.info("%s: %d utterances left untranscribed at close", self.room.name, self.queue.qsize())
        self._background.cancel()

    def _on_track(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or p.identity.startswith(SERVICE_PREFIXES):
            return  # hold audio and the briefing are not part of the conversation
        self._background.spawn(self._read(track, p.identity))

    def _on_untrack(self, track: rtc.Track, _pub: rtc.RemoteTrackPublication, _p: rtc.RemoteParticipant) -> None:
        # Close the stream of a track that is gone: WebRTC reuses its receiver for the next track, and
        # a stream left open would caption that next speaker under this one's name (measured: after a
        # one-page reload and a hand-over, B's words came out twice, once as the caller's).
        if stream := self._streams.pop(track.sid, None):
            self._background.spawn(_close(stream))

    async def _read(self, track: rtc.Track, identity: str) -> None:
        seg = Segmenter()
        # 16 kHz mono from the SDK (resampled in Rust): a third of the samples Python would touch at
        # 48 kHz. 100 ms frames: every SDK event is offered to every room queue of the process, so
        # 10 events a second per speaker instead of 100 keeps the worker's loops responsive (at 10 ms
        # frames, rooms connecting beside five transcribed calls timed out in the SDK).
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=FRAME_MS)
        self._streams[track.sid] = stream
        offset = time.monotonic() - self.t0  # the segmenter's clock starts when this track does
        self._on_listening(identity)
        try:
            async for ev in stream:
                for utt in seg.push(bytes(ev.frame.data.cast("B"))):
                    self._enqueue(identity, utt, offset)
                if seg.speaking:
                    self.voice_at[identity] = time.monotonic()
        finally:
            if utt := seg.flush():
                self._enqueue(identity, utt, offset)
            if self._streams.get(track.sid) is stream:
                del self._streams[track.sid]
                await _close(stream)

    def _enqueue(self, identity: str, utt: Utterance, offset: float) -> None:
        self.queue.put(identity, Utterance(utt.pcm, utt.start + offset, utt.end + offset, utt.capped))

    async def _one(self, identity: str, utt: Utterance, ended_at: float) -> None:
        t = time.monotonic()
        req = TranscribeRequest(audio=utt.pcm, encoding="pcm_s16le", sample_rate=RATE, language="en")
        result = await self._transcribe(req)
        self.metrics.busy_s += time.monotonic() - t
        self.metrics.audio_s += utt.end - utt.start
        text = result.text.strip()
        if not text:
            log.info("%s: %.1fs of %s transcribed to nothing", self.room.name, utt.end - utt.start, identity)
            return
        seg = TranscriptSegment(
            speaker=self.speaker_label(identity),
            text=text,
            start=round(utt.start, 3),
            end=round(utt.end, 3),
            cut=utt.capped,
            fallback=result.fallback,
            words=[Word(word=w.word, start=w.start + utt.start, end=w.end + utt.start) for w in result.words],
        )
        lag = time.monotonic() - ended_at
        self.metrics.latencies.append(lag)
        if lag > 5.0:
            log.warning("transcription lag in %s: %.1fs behind real time", self.room.name, lag)
        await self._on_segment(seg, lag)


async def _close(stream: rtc.AudioStream) -> None:
    """Bounded: the SDK ends a closed stream with an end-of-stream event; if that never comes the
    reader is left to the job's teardown rather than holding this task."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stream.aclose(), 2.0)
