"""Live transcription inside the rooms: a hidden, subscribe-only participant per room
segments each speaker's audio (functions.segmenter), transcribes utterances off the
event loop, stores speaker-labelled segments, pushes captions as data messages and
keeps the call's rolling summary current.

Call rooms feed the summary; consult rooms (A briefing B) are transcribed and kept with
the transfer but never reach the summary spoken to B.

`LiveTranscription` follows the orchestrator's notifications: a call that starts gets a
transcriber, a consult that starts gets one, and both leave when their room ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livekit import rtc

from functions.background import Background
from functions.models import (
    SERVICE_PREFIXES,
    Call,
    CallStatus,
    CallSummary,
    Notification,
    Role,
    TokenRequest,
    TranscriptSegment,
    Word,
)
from functions.participants import settle
from functions.protocols import Transcriber
from functions.rooms import Rooms
from functions.segmenter import RATE, Segmenter, Utterance
from functions.settings import Settings
from functions.store import Store
from functions.summarization import RollingSummary
from functions.tokens import mint_token

log = logging.getLogger(__name__)
QUEUE_LIMIT = 32  # utterances waiting per room; beyond that we are far behind real time


@dataclass
class Metrics:
    """Per room: end-of-utterance → segment stored (seconds), drops, queue depth."""

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


class RoomTranscriber:
    """One hidden participant transcribing every speaker in one room."""

    def __init__(
        self,
        settings: Settings,
        *,
        room: str,
        call_id: str,
        caller_identity: str,
        transcriber: Transcriber,
        store: Store,
        transfer_id: str | None = None,
        on_segment: Callable[[TranscriptSegment], None] | None = None,
        on_left: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.room_name = room
        self.call_id = call_id
        self.caller_identity = caller_identity
        self.transcriber = transcriber
        self.store = store
        self.transfer_id = transfer_id
        self.on_segment = on_segment
        self.on_left = on_left
        self.identity = f"transcriber-{transfer_id or call_id}"
        self.room = rtc.Room()
        self.metrics = Metrics()
        self._queue: asyncio.Queue[tuple[str, Utterance, float]] = asyncio.Queue(QUEUE_LIMIT)
        self.background = Background()
        self._readers: dict[str, asyncio.Task] = {}
        self.listening: set[str] = set()  # identities whose audio is being read right now
        self._t0 = time.monotonic()
        self.stopped = asyncio.Event()
        self._connecting: asyncio.Future | None = None
        self.room.on("track_subscribed", self._on_track)
        self.room.on("participant_disconnected", lambda p: self.on_left and self.on_left(p.identity))
        self.room.on("disconnected", lambda *_: self.stopped.set())

    def speaker_label(self, identity: str) -> str:
        return "caller" if identity == self.caller_identity else f"agent:{identity}"

    async def start(self) -> RoomTranscriber:
        req = TokenRequest(
            identity=self.identity,
            name="Transcriber",
            role=Role.service,
            room=self.room_name,
            can_publish=False,
            hidden=True,
        )
        token = mint_token(req, self.settings).token
        self._connecting = asyncio.ensure_future(
            self.room.connect(self.settings.livekit_url, token, rtc.RoomOptions(auto_subscribe=True))
        )
        await asyncio.shield(self._connecting)
        self.background.spawn(self._work())
        return self

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Leave the room; utterances already heard are still transcribed (bounded wait)."""
        for reader in list(self._readers.values()):
            reader.cancel()
        await settle(self._connecting)
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        self.background.cancel()
        self.stopped.set()

    async def idle(self) -> None:
        """Every utterance heard so far has been transcribed (or failed)."""
        await self._queue.join()

    def _on_track(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or p.identity.startswith(SERVICE_PREFIXES):
            return  # hold music and the briefing are not part of the conversation
        self._readers[pub.sid] = self.background.spawn(self._read(track, p.identity))

    async def _read(self, track: rtc.Track, identity: str) -> None:
        seg = Segmenter()
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        offset = time.monotonic() - self._t0  # the segmenter's clock starts when this track does
        self.listening.add(identity)
        try:
            async for ev in stream:
                for utt in seg.push(bytes(ev.frame.data.cast("B"))):
                    self._enqueue(identity, utt, offset)
        finally:
            self.listening.discard(identity)
            if utt := seg.flush():
                self._enqueue(identity, utt, offset)
            await stream.aclose()

    def _enqueue(self, identity: str, utt: Utterance, offset: float) -> None:
        item = (identity, Utterance(utt.pcm, utt.start + offset, utt.end + offset, utt.capped), time.monotonic())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # Never silently: the drop is counted, logged and visible in the metrics.
            self.metrics.dropped += 1
            log.error(
                "transcription of %s is %d utterances behind; dropped one from %s (%.1fs)",
                self.room_name,
                self._queue.qsize(),
                identity,
                utt.end - utt.start,
            )
            return
        self.metrics.max_queue = max(self.metrics.max_queue, self._queue.qsize())

    async def _work(self) -> None:
        while True:
            identity, utt, ended_at = await self._queue.get()
            try:
                await self._transcribe(identity, utt, ended_at)
            except Exception as e:  # a failed utterance is logged; the call goes on
                log.warning("transcription failed in %s: %s", self.room_name, e)
            finally:
                self._queue.task_done()

    async def _transcribe(self, identity: str, utt: Utterance, ended_at: float) -> None:
        t = time.monotonic()
        result = await asyncio.to_thread(self.transcriber.transcribe, utt.pcm, RATE, "en")
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
        self.store.add_segment(self.call_id, seg, transfer_id=self.transfer_id)
        lag = time.monotonic() - ended_at
        self.metrics.latencies.append(lag)
        if lag > 5.0:
            log.warning("transcription lag in %s: %.1fs behind real time", self.room_name, lag)
        if self.on_segment:
            self.on_segment(seg)


class LiveTranscription:
    """Starts and stops room transcribers from the orchestrator's notifications and owns
    each call's rolling summary (the orchestrator reads it at transfer time)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        rooms: Rooms,
        transcriber: Transcriber,
        summarizer_factory: Callable[[], RollingSummary] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.rooms = rooms
        self.transcriber = transcriber
        self._new_summary = summarizer_factory or RollingSummary
        self.summaries: dict[str, RollingSummary] = {}
        self.transcribers: dict[str, RoomTranscriber] = {}  # room → transcriber
        self.background = Background()
        self.on_caller_left: Callable[[str], None] | None = None  # call_id → end the call

    # --- what the orchestrator reads -----------------------------------------------------------
    def summary_for(self, call: Call) -> CallSummary:
        rolling = self.summaries.get(call.call_id)
        if rolling is None or not rolling.segments:
            name = call.caller_name or None
            who = f"Caller {name}" if name else "The caller"
            return CallSummary(caller_name=name, brief=f"Incoming warm transfer. {who} is on hold. No transcript yet.")
        summary = rolling.current
        if not summary.caller_name and call.caller_name:
            summary = summary.model_copy(update={"caller_name": call.caller_name})
        return summary

    # --- notifications ----------------------------------------------------------------------------
    def on_notification(self, msg: Notification) -> None:
        p = msg.payload
        if msg.type == "call.status":
            call = self.store.get_call(p["call_id"])
            if call.status is CallStatus.ended:
                self.background.spawn(self.stop_room(call.room))
            elif call.room not in self.transcribers:
                self.background.spawn(self.start_call(call))
        elif msg.type.startswith("transfer."):
            t = p["transfer"]
            if msg.type == "transfer.consulting" and t["target_kind"] == "agent":
                self.background.spawn(self.start_consult(t["call_id"], t["transfer_id"], t["consult_room"]))
            elif msg.type not in ("transfer.consulting", "transfer.completing"):
                self.background.spawn(self.stop_room(t["consult_room"]))

    async def start_call(self, call: Call) -> None:
        if call.room in self.transcribers:
            return
        rolling = self.summaries.setdefault(call.call_id, self._new_summary())
        # After a restart the stored transcript seeds the summary again.
        if not rolling.segments and (stored := self.store.segments(call.call_id)):
            await asyncio.to_thread(rolling.update, stored)

        def on_segment(seg: TranscriptSegment) -> None:
            self.background.spawn(self._publish(call.call_id, call.room, seg, rolling))

        def on_left(identity: str) -> None:
            if identity == call.caller_identity and self.on_caller_left:
                self.on_caller_left(call.call_id)

        rt = RoomTranscriber(
            self.settings,
            room=call.room,
            call_id=call.call_id,
            caller_identity=call.caller_identity,
            transcriber=self.transcriber,
            store=self.store,
            on_segment=on_segment,
            on_left=on_left,
        )
        self.transcribers[call.room] = rt
        try:
            await rt.start()
        except Exception as e:
            self.transcribers.pop(call.room, None)
            log.warning("no live transcription for %s: %s", call.room, e)

    async def start_consult(self, call_id: str, transfer_id: str, room: str) -> None:
        call = self.store.get_call(call_id)

        def on_segment(seg: TranscriptSegment) -> None:
            msg = Notification(
                type="transcript.segment",
                payload={
                    "call_id": call_id,
                    "transfer_id": transfer_id,
                    **seg.model_dump(mode="json", exclude={"words"}),
                },
            )
            self.background.spawn(self.rooms.send(room, msg))

        rt = RoomTranscriber(
            self.settings,
            room=room,
            call_id=call_id,
            caller_identity=call.caller_identity,
            transcriber=self.transcriber,
            store=self.store,
            transfer_id=transfer_id,
            on_segment=on_segment,
        )
        self.transcribers[room] = rt
        try:
            await rt.start()
        except Exception as e:
            self.transcribers.pop(room, None)
            log.warning("no consult transcription for %s: %s", room, e)

    async def stop_room(self, room: str) -> None:
        if rt := self.transcribers.pop(room, None):
            await rt.stop()

    async def aclose(self) -> None:
        # Let transcribers that are still joining finish joining (bounded), then stop all.
        await self.background.wait(timeout=15)
        for room in list(self.transcribers):
            await self.stop_room(room)
        self.background.cancel()

    async def _publish(self, call_id: str, room: str, seg: TranscriptSegment, rolling: RollingSummary) -> None:
        caption = Notification(
            type="transcript.segment", payload={"call_id": call_id, **seg.model_dump(mode="json", exclude={"words"})}
        )
        await self.rooms.send(room, caption)
        summary = await asyncio.to_thread(rolling.update, [seg])
        call = self.store.get_call(call_id)
        if call.agent_identity:  # the summary is for agents only, never the caller
            msg = Notification(
                type="summary.updated", payload={"call_id": call_id, "summary": summary.model_dump(mode="json")}
            )
            await self.rooms.send(room, msg, [call.agent_identity])


def attach_live_transcription(orch, live: LiveTranscription) -> None:
    """Wire live transcription into an orchestrator: it follows the orchestrator's
    notifications, supplies the rolling summary at transfer time, and ends a call when
    the caller hangs up."""
    orch.summary_source = live.summary_for
    orch.listeners.append(live.on_notification)

    def caller_left(call_id: str) -> None:
        call = orch.store.get_call(call_id)
        live.background.spawn(orch.end_call(call_id, actor=call.caller_identity))

    live.on_caller_left = caller_left
