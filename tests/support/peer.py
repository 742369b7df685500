"""A real LiveKit participant for tests and benchmarks (livekit realtime SDK).

It publishes a tone or speech on its microphone track and measures what it hears,
per remote identity: when audio with energy arrived, its level and dominant
frequency. Assertions about "who hears whom" read these measurements; they are
made of decoded Opus frames, not of subscription events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc

from functions.audio import rms_dbfs

SAMPLE_RATE = 48000
FRAME_MS = 20
ENERGY_DBFS = -45.0  # louder than Opus comfort noise, far quieter than any test source


def gaps(times: list[float], start: float, end: float) -> list[float]:
    """The stretches in [start, end] between audible frames (`Heard.energy_times`): a silence heard."""
    edges = [start, *sorted(t for t in times if start <= t <= end), end]
    return [b - a for a, b in itertools.pairwise(edges)]


@dataclass
class Heard:
    """What one receiver got from one remote identity."""

    frames: int = 0
    energetic_frames: int = 0
    first_energy_at: float | None = None
    last_energy_at: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=400))  # (t, dbfs, pcm bytes)
    energy_times: list[float] = field(default_factory=list)
    recorded: list[tuple[float, bytes]] = field(default_factory=list)  # every frame, with `record` naming its sender


class Peer:
    def __init__(
        self,
        identity: str,
        *,
        tone_hz: float | None = None,
        pcm: bytes | None = None,
        pcm_rate: int = SAMPLE_RATE,
        loop_pcm: bool = True,
        voice: bool = False,
        listen: bool = True,
        frame_ms: int = 10,
        record: bool | tuple[str, ...] = (),
    ) -> None:
        self.identity = identity
        # Keep every frame heard (48 kHz mono PCM with arrival times) from everyone (`True`) or from
        # these identities: what a test transcribes (`recorded`, `speech_after`); `recent` keeps only
        # the last few seconds.
        self.record = record
        self.frame_ms = frame_ms  # of what it hears: coarser frames cost a listener less (benches)
        self.listen = listen  # subscribe and measure what arrives (off: a talker only, cheaper)
        self.voice = voice  # publish a microphone that plays what `say()` is given, silence between
        self._utterances: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.tone_hz = tone_hz
        self.pcm = pcm
        self.pcm_rate = pcm_rate
        self.loop_pcm = loop_pcm
        self.room = rtc.Room()
        self.heard: dict[str, Heard] = defaultdict(Heard)
        self.messages: list[dict] = []
        self._tasks: set[asyncio.Task] = set()
        self._source: rtc.AudioSource | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self.disconnected = asyncio.Event()
        self.room.on("track_subscribed", self._on_track)
        self.room.on("track_unsubscribed", self._on_untrack)
        self._streams: dict[str, rtc.AudioStream] = {}
        self.room.on("data_received", self._on_data)
        self.room.on("disconnected", lambda *_: self.disconnected.set())
        self.room.on("participant_permissions_changed", self._on_permissions)
        self._wants_to_publish = False
        self._pump_task: asyncio.Task | None = None

    # --- connection -------------------------------------------------------------------
    async def connect(self, url: str, token: str, *, publish: bool = True, timeout: float = 30.0) -> Peer:
        """Bounded: a connection that has not succeeded within `timeout` is abandoned and closed."""
        try:
            await asyncio.wait_for(self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=self.listen)), timeout)
        except TimeoutError:
            await self.disconnect()
            raise AssertionError(f"{self.identity}: could not connect within {timeout}s") from None
        if publish and (self.tone_hz or self.pcm or self.voice):
            await self.publish()
        return self

    async def publish(self) -> None:
        self._wants_to_publish = True
        self._source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", self._source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        # Bounded: a peer removed by the server meanwhile never hears back about its publication.
        try:
            self._publication = await asyncio.wait_for(self.room.local_participant.publish_track(track, opts), 10.0)
        except TimeoutError:
            raise AssertionError(f"{self.identity}: publishing its microphone timed out") from None
        if self._pump_task:
            self._pump_task.cancel()
        self._pump_task = asyncio.ensure_future(self._pump(self._source))
        self._tasks.add(self._pump_task)

    async def unpublish(self) -> None:
        for sid in list(self.room.local_participant.track_publications):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.room.local_participant.unpublish_track(sid), 5.0)
        self._publication = None

    async def disconnect(self) -> None:
        """Bounded: stops sending and measuring, closes the streams, leaves the room."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 5.0)

    def _on_permissions(self, participant: rtc.Participant, permissions) -> None:
        # What a real client does: when the server gives publishing back (a transfer was
        # cancelled and the caller is ours again), publish the microphone again.
        if participant.identity != self.identity or not self._wants_to_publish:
            return
        if permissions.can_publish:
            self.spawn(self.republish())

    async def republish(self) -> None:
        await self.unpublish()
        await self.publish()

    # --- sending --------------------------------------------------------------------------
    async def say(self, pcm: bytes, rate: int) -> float:
        """Speak one utterance on the microphone; returns once its last sample is in the source's queue,
        with when that sample leaves it (monotonic): the end of the utterance as the room hears it (the
        source buffers up to a second ahead of real time)."""
        from functions.audio import resample

        done = asyncio.get_running_loop().create_future()
        self._utterances.put_nowait((np.frombuffer(resample(pcm, rate, SAMPLE_RATE), dtype="<i2"), done))
        return await done

    def _samples(self) -> np.ndarray:
        if self.voice:
            return np.zeros(0, dtype="<i2")
        if self.pcm is not None:
            from functions.audio import resample

            return np.frombuffer(resample(self.pcm, self.pcm_rate, SAMPLE_RATE), dtype="<i2")
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE  # one second loops seamlessly for integer Hz
        return (np.sin(2 * np.pi * float(self.tone_hz or 0) * t) * 0.3 * 32767).astype("<i2")

    async def _pump(self, source: rtc.AudioSource) -> None:
        samples = self._samples()
        n = SAMPLE_RATE * FRAME_MS // 1000
        silence = np.zeros(n, dtype="<i2")
        pos = 0
        playing: asyncio.Future | None = None
        while True:
            if self.voice and pos >= len(samples):
                if playing is not None and not playing.done():
                    playing.set_result(time.monotonic() + source.queued_duration)
                    playing = None
                if not self._utterances.empty():
                    samples, playing = self._utterances.get_nowait()
                    pos = 0
            if pos + n <= len(samples):
                chunk = samples[pos : pos + n]
                pos += n
            elif pos < len(samples) and self.voice:
                chunk = np.concatenate([samples[pos:], silence[: n - (len(samples) - pos)]])
                pos = len(samples)
            elif self.loop_pcm and not self.voice:
                chunk = np.take(samples, range(pos, pos + n), mode="wrap")
                pos = (pos + n) % len(samples)
            else:
                chunk, pos = silence, len(samples)  # played once: silence afterwards
            frame = rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, n)
            await source.capture_frame(frame)  # paces at real time (bounded queue)

    # --- receiving ------------------------------------------------------------------------
    def spawn(self, coro) -> None:
        """Run `coro` as one of the peer's tasks: cancelled and awaited when it disconnects."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self.spawn(self._listen(track, participant.identity))

    def _on_untrack(self, track: rtc.Track, *_args) -> None:
        # Close the stream: WebRTC reuses the receiver for the next track, and a stream
        # left open would attribute the next participant's audio to this one.
        if stream := self._streams.pop(track.sid, None):
            self.spawn(stream.aclose())

    async def _listen(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=self.frame_ms)
        self._streams[track.sid] = stream
        stats = self.heard[identity]
        try:
            await self._measure(stream, stats, identity)
        finally:
            # A stream left open stays subscribed to the SDK's event queue, which then runs its filter
            # for every audio frame of the process: leaked streams made later tests' peers time out.
            if self._streams.pop(track.sid, None) is stream:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream.aclose(), 2.0)

    async def _measure(self, stream: rtc.AudioStream, stats: Heard, identity: str = "") -> None:
        async for ev in stream:
            pcm = bytes(ev.frame.data.cast("B"))
            db = rms_dbfs(pcm, silence=-120.0)
            now = time.monotonic()
            stats.frames += 1
            stats.recent.append((now, db, pcm))
            if self.record is True or (self.record and identity in self.record):
                stats.recorded.append((now, pcm))
            if db > ENERGY_DBFS:
                stats.energetic_frames += 1
                stats.energy_times.append(now)
                if stats.first_energy_at is None:
                    stats.first_energy_at = now
                stats.last_energy_at = now

    def _on_data(self, packet: rtc.DataPacket) -> None:
        with contextlib.suppress(ValueError):
            self.messages.append(json.loads(packet.data))

    # --- questions tests ask ------------------------------------------------------------
    def hears(self, identity: str, within_s: float = 0.5) -> bool:
        """Audio with energy from `identity` arrived in the last `within_s` seconds."""
        if identity not in self.heard:
            return False
        now = time.monotonic()
        # At least 50 ms of audible frames in the window: one stray frame is not "hearing".
        loud = sum(1 for t, db, _ in reversed(self.heard[identity].recent) if now - t <= within_s and db > ENERGY_DBFS)
        return loud >= 5

    def first_energy_after(self, identity: str, t0: float) -> float | None:
        times = self.heard[identity].energy_times if identity in self.heard else []
        return next((t for t in times if t >= t0), None)

    def dominant_hz(self, identity: str, window_s: float = 0.3) -> float:
        from functions.audio import dominant_hz

        now = time.monotonic()
        pcm = b"".join(p for t, db, p in self.heard[identity].recent if now - t <= window_s and db > ENERGY_DBFS)
        return dominant_hz(pcm, SAMPLE_RATE)

    def recorded(self, identity: str, since: float = 0.0, until: float = float("inf")) -> bytes:
        """What was heard from `identity` (48 kHz mono s16le) between two `time.monotonic()` times."""
        return b"".join(pcm for t, pcm in self.heard[identity].recorded if since <= t <= until)

    def audible_identities(self, within_s: float = 0.5) -> set[str]:
        return {ident for ident in list(self.heard) if self.hears(ident, within_s)}

    async def wait_until(self, predicate, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.identity}: timed out after {timeout}s waiting for {what}; hears {sorted(self.audible_identities())}"
        )

    async def wait_hears(self, identity: str, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: self.hears(identity), timeout, f"audio from {identity}")

    async def wait_not_hears(self, identity: str, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: not self.hears(identity, 0.6), timeout, f"silence from {identity}")

    async def wait_hears_only(self, identities: set[str], timeout: float = 5.0) -> None:
        """Exactly these identities are audible now, nobody else. Waited for (not sampled once),
        so a momentary stall of the audio pipeline on a busy machine is not read as silence."""
        want = set(identities)
        await self.wait_until(lambda: self.audible_identities() == want, timeout, f"hearing only {sorted(want)}")

    async def speech_after(
        self, identity: str, t0: float, *, quiet_s: float = 1.5, timeout: float = 30.0
    ) -> tuple[float, bytes]:
        """(when it started, the 48 kHz PCM) of what `identity` said after `t0`: from its first audible
        frame until it has been quiet for `quiet_s` (needs `record=True`). Bounded by `timeout`."""
        spoke = lambda: self.first_energy_after(identity, t0) is not None  # noqa: E731
        await self.wait_until(spoke, timeout, f"{identity} speaking")
        start = self.first_energy_after(identity, t0)
        assert start is not None

        def ended() -> bool:
            last = self.heard[identity].last_energy_at or start
            return time.monotonic() - last >= quiet_s

        await self.wait_until(ended, timeout, f"{identity} to finish speaking")
        end = self.heard[identity].last_energy_at or start
        pcm = b"".join(p for t, p in self.heard[identity].recorded if start - 0.1 <= t <= end + 0.1)
        return start, pcm

    async def wait_message(self, predicate, timeout: float = 10.0) -> dict:
        await self.wait_until(lambda: any(predicate(m) for m in self.messages), timeout, "a data message")
        return next(m for m in self.messages if predicate(m))
