"""Server-side LiveKit participants (realtime SDK) that the orchestrator runs:

- `HoldMusic` sits in the caller's room during a consult, plays a generated music
  loop, and watches the room (caller hangs up, B's microphone arrives).
- `Briefing` sits in the consult room: sends the `CallSummary` as a data message,
  speaks the brief (streamed TTS) to B once B subscribes, and watches B's presence.

Both connect with service tokens minted here and never outlive their room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
from livekit import rtc

from functions.audio import resample
from functions.background import Background
from functions.models import CallSummary, Notification, Role, TokenRequest
from functions.protocols import PcmChunk, Speaker
from functions.rooms import TOPIC
from functions.settings import Settings
from functions.tokens import mint_token

log = logging.getLogger(__name__)
RATE = 48000
FRAME = RATE // 100  # 10 ms: audio is padded to whole frames
PUSH = RATE // 10  # 100 ms per capture call: 10x fewer Python→FFI hops than 10 ms frames


async def settle(connecting: asyncio.Future | None, timeout: float = 15.0) -> None:
    """Wait for a connect in progress to finish (either way) before disconnecting:
    a connect cut in half leaves the SDK with a half-open session."""
    if connecting is not None and not connecting.done():
        await asyncio.wait([connecting], timeout=timeout)


def hold_music_loop(seconds: float = 8.0) -> np.ndarray:
    """A gentle C-major arpeggio with soft attacks: real music, generated, no assets."""
    notes = [261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23]
    step = seconds / len(notes)
    t = np.arange(int(step * RATE)) / RATE
    env = np.minimum(1.0, t / 0.03) * np.exp(-2.2 * t)
    parts = []
    for f in notes:
        wave_ = np.sin(2 * np.pi * f * t) + 0.35 * np.sin(2 * np.pi * 2 * f * t) + 0.15 * np.sin(2 * np.pi * 3 * f * t)
        pad = 0.5 * np.sin(2 * np.pi * (f / 2) * t)  # a soft bass under each note keeps it from going silent
        parts.append((wave_ * env + pad * 0.4) * 0.18)
    return (np.concatenate(parts) * 32767).astype("<i2")


class _ServiceParticipant:
    """Connect/disconnect plumbing shared by the two participants."""

    def __init__(self, settings: Settings, room: str, identity: str, name: str, *, auto_subscribe: bool) -> None:
        self.settings = settings
        self.room_name = room
        self.identity = identity
        self.name = name
        self.room = rtc.Room()
        self._auto_subscribe = auto_subscribe
        self.background = Background()
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=300)
        self._connecting: asyncio.Future | None = None

    async def connect(self, only_for: str | None = None) -> None:
        token = mint_token(
            TokenRequest(identity=self.identity, name=self.name, role=Role.service, room=self.room_name),
            self.settings,
        ).token
        options = rtc.RoomOptions(auto_subscribe=self._auto_subscribe)
        # Shielded: cancelling whoever awaits us must not cut the SDK's connect in half.
        self._connecting = asyncio.ensure_future(self.room.connect(self.settings.livekit_url, token, options))
        await asyncio.shield(self._connecting)
        if only_for:  # set before publishing, so nobody else can subscribe even briefly
            self.room.local_participant.set_track_subscription_permissions(
                allow_all_participants=False,
                participant_permissions=[rtc.ParticipantTrackPermission(participant_identity=only_for, allow_all=True)],
            )
        track = rtc.LocalAudioTrack.create_audio_track(self.name, self.source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

    async def stop(self) -> None:
        self.background.cancel()
        await settle(self._connecting)
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        with contextlib.suppress(Exception):
            await self.source.aclose()

    async def push(self, samples: np.ndarray) -> None:
        usable = len(samples) - len(samples) % FRAME
        for i in range(0, usable, PUSH):
            chunk = samples[i : min(i + PUSH, usable)]
            await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))


class HoldMusic(_ServiceParticipant):
    def __init__(
        self,
        settings: Settings,
        room: str,
        *,
        call_id: str,
        on_participant_left: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(settings, room, f"hold-{call_id}", "Hold music", auto_subscribe=False)
        self._on_left = on_participant_left
        self._publishers: dict[str, asyncio.Event] = {}
        self.room.on("participant_disconnected", self._left)
        self.room.on("track_published", self._track_published)

    async def start(self) -> HoldMusic:
        await self.connect()
        self.background.spawn(self._play())
        return self

    async def _play(self) -> None:
        loop = hold_music_loop()
        while True:
            await self.push(loop)

    def _left(self, p: rtc.RemoteParticipant) -> None:
        if self._on_left:
            self._on_left(p.identity)

    def _track_published(self, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if pub.kind == rtc.TrackKind.KIND_AUDIO:
            self._publishers.setdefault(p.identity, asyncio.Event()).set()

    def has_audio_from(self, identity: str) -> bool:
        p = self.room.remote_participants.get(identity)
        return bool(p and any(pub.kind == rtc.TrackKind.KIND_AUDIO for pub in p.track_publications.values()))

    async def wait_for_audio_from(self, identity: str, timeout: float) -> bool:
        """True once `identity` has published audio in this room (B arrived and speaks)."""
        if self.has_audio_from(identity):
            return True
        ev = self._publishers.setdefault(identity, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except TimeoutError:
            return self.has_audio_from(identity)


class Briefing(_ServiceParticipant):
    """Speaks the summary brief to B in the consult room and sends the summary card."""

    def __init__(
        self,
        settings: Settings,
        room: str,
        *,
        transfer_id: str,
        speaker: Speaker,
        summary: CallSummary,
        target_identity: str,
        on_target_joined: Callable[[], None] | None = None,
        on_target_left: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(settings, room, f"briefing-{transfer_id}", "Transfer briefing", auto_subscribe=False)
        self.transfer_id = transfer_id
        self.speaker = speaker
        self.summary = summary
        self.target = target_identity
        self._on_joined = on_target_joined
        self._on_left = on_target_left
        self._target_listening = asyncio.Event()
        self._audio: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
        self.spoken_at: float | None = None
        self.tts_error: str | None = None
        self.room.on("participant_connected", self._joined)
        self.room.on("participant_disconnected", self._left)
        self.room.on("local_track_subscribed", self._subscribed)

    def brief_text(self) -> str:
        return self.summary.brief or "Incoming warm transfer. No summary is available yet."

    async def start(self) -> Briefing:
        # Synthesis starts before B arrives, so the first frame is ready when B listens.
        self.background.spawn(self._synthesize())
        await self.connect(only_for=self.target)
        await self.send_summary()
        for p in self.room.remote_participants.values():
            self._joined(p)
        self.background.spawn(self._speak())
        return self

    async def send_summary(self, identities: list[str] | None = None) -> None:
        msg = Notification(
            type="transfer.summary",
            payload={"transfer_id": self.transfer_id, "summary": self.summary.model_dump(mode="json")},
        )
        await self.room.local_participant.publish_data(
            json.dumps(msg.model_dump(mode="json")), reliable=True, topic=TOPIC, destination_identities=identities or []
        )

    async def _synthesize(self) -> None:
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                chunks: Iterator[PcmChunk] = self.speaker.synthesize(self.brief_text())
                for chunk in chunks:
                    pcm = np.frombuffer(resample(chunk.data, chunk.sample_rate, RATE), dtype="<i2")
                    loop.call_soon_threadsafe(self._audio.put_nowait, pcm)
            except Exception as e:  # a failing TTS degrades to a text-only brief; the call goes on
                self.tts_error = f"{type(e).__name__}: {e}"
                log.warning("briefing TTS failed for %s, text-only brief: %s", self.transfer_id, e)
            finally:
                loop.call_soon_threadsafe(self._audio.put_nowait, None)

        await asyncio.to_thread(produce)

    async def _speak(self) -> None:
        await self._target_listening.wait()
        while (pcm := await self._audio.get()) is not None:
            if self.spoken_at is None:
                self.spoken_at = time.monotonic()
            pad = (-len(pcm)) % FRAME
            await self.push(np.concatenate([pcm, np.zeros(pad, dtype="<i2")]) if pad else pcm)

    def _joined(self, p: rtc.RemoteParticipant) -> None:
        if p.identity != self.target:
            return
        # Data messages are not stored by the server: B gets the card when B arrives.
        self.background.spawn(self.send_summary([self.target]))
        if self._on_joined:
            self._on_joined()

    def _subscribed(self, _track: rtc.Track) -> None:
        # Only B may subscribe to the briefing track (see start), so the first
        # subscription is B's: speak now and B hears the brief from its first word.
        self._target_listening.set()

    def _left(self, p: rtc.RemoteParticipant) -> None:
        if p.identity == self.target and self._on_left:
            self._on_left()
