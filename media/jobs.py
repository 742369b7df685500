"""The two jobs of the media plane, one per room.

- the call job, in `call-<id>` for the whole call. Plays hold audio while the room's metadata
  says `hold` (livekit-agents' bundled hold-music clip), tells the caller what is happening in
  speech (the announcement, reminders, "you're back with A": TTS through the gateway), and
  transcribes the caller and the agent when transcription is on.
- the consult job, in `consult-<tid>`. Its track may be subscribed by B only; it sends B the
  summary card and speaks the brief the moment B subscribes; it transcribes the consult, and answers
  B's questions to the briefing by voice (`media.briefing_qa`).

Both leave when their room is deleted (the control plane ends rooms, not jobs), and report what
they did to the control plane (`media.reporter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from livekit import rtc
from livekit.agents import AutoSubscribe, JobContext
from livekit.agents.utils import http_context
from livekit.agents.utils.audio import audio_frames_from_file
from livekit.agents.voice.background_audio import BuiltinAudioClip

from functions.audio import read_wav, resample, rms_dbfs
from functions.events import SummaryCard, SummaryCardPayload
from functions.gateway import FunctionsGateway
from functions.media_protocol import (
    CallJob,
    CallRoomState,
    ConsultJob,
    MediaEvent,
    SegmentReport,
    TranscriptionStatus,
)
from functions.models import SERVICE_PREFIXES, TOPIC, SpeechRequest, TranscriptSegment
from media.briefing_qa import BriefingQA
from media.function_reports import FunctionReports
from media.listen import Backlog, RoomListener
from media.reporter import Reporter
from media.slots import ConnectSlots
from media.track import OnDemandTrack

log = logging.getLogger(__name__)
RATE = 48000
FRAME = RATE // 100  # 10 ms: audio is pushed in whole frames
PUSH = RATE // 10  # 100 ms per capture call: fewer Python→FFI hops than 10 ms frames


@dataclass
class JobDeps:
    """What a job needs from its worker: the gateway (shared by every job of the worker), the
    LiveKit secret its reports are authenticated with, the hold clip, the connect slots, and how long
    an answer to B's question may take before the offline one is spoken."""

    gateway: FunctionsGateway
    api_secret: str
    hold_clip: np.ndarray
    slots: ConnectSlots
    qa_timeout_s: float = 2.5  # B's question: the gateway's answer is awaited this long, then the offline one

    def reporter(self, control_url: str) -> Reporter:
        return Reporter(control_url, self.api_secret, http_context.http_session)


BRIEF_FIRST_S = 15.0  # a consult's transcription waits this long at most for the brief's audio
ALONE_S = 60.0  # a room with nobody but service participants for this long is left


def _stop_event(ctx: JobContext) -> asyncio.Event:
    """Set when the worker shuts the job down (SIGTERM, drain): the job ends at once, not at its room's end."""
    stop = asyncio.Event()

    async def on_shutdown() -> None:
        stop.set()

    ctx.add_shutdown_callback(on_shutdown)
    return stop


async def _until_disconnected(room: rtc.Room, gone: asyncio.Event) -> None:
    """Until the control plane deletes the room, the worker stops the job, or nobody but services has
    been there for ALONE_S (an orphan room, e.g. its control plane is gone for good): a job never
    lingers forever."""
    room.on("disconnected", lambda *_: gone.set())
    alone_since: float | None = None
    while not gone.is_set() and room.connection_state != rtc.ConnectionState.CONN_DISCONNECTED:
        humans = [p for p in room.remote_participants.values() if not p.identity.startswith(SERVICE_PREFIXES)]
        now = asyncio.get_running_loop().time()
        alone_since = None if humans else (alone_since or now)
        if alone_since is not None and now - alone_since > ALONE_S:
            log.info("%s: nobody but services for %.0fs; leaving", room.name, ALONE_S)
            await room.disconnect()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), 5.0)


def _listener(
    ctx: JobContext, spec: CallJob | ConsultJob, deps: JobDeps, reporter: Reporter, qa: BriefingQA | None = None
) -> RoomListener:
    transfer_id = spec.transfer_id if isinstance(spec, ConsultJob) else None

    listener: RoomListener

    async def on_segment(seg: TranscriptSegment, lag: float) -> None:
        if qa is not None:
            qa.heard(seg, lag, listener)  # answered in the background: the caption is not held up
        report = SegmentReport(
            call_id=spec.call_id, transfer_id=transfer_id, segment=seg, lag_s=lag, dropped=listener.metrics.dropped
        )
        await reporter.send(report)

    def on_status(backlog: Backlog) -> None:
        status = TranscriptionStatus(
            call_id=spec.call_id,
            transfer_id=transfer_id,
            behind_s=backlog.behind_s,
            dropped=backlog.dropped,
            dropped_s=backlog.dropped_s,
        )
        reporter.post(status)

    def on_listening(identity: str) -> None:
        event = MediaEvent(call_id=spec.call_id, transfer_id=transfer_id, event="listening", detail=identity)
        reporter.post(event)

    listener = RoomListener(
        ctx.room,
        caller_identity=spec.caller_identity,
        transcribe=deps.gateway.transcribe,
        on_segment=on_segment,
        on_listening=on_listening,
        on_status=on_status,
    )
    return listener.start()


# --- the call job ---------------------------------------------------------------------------------


async def load_hold_clip(min_dbfs: float = -45.0) -> np.ndarray:
    """livekit-agents' bundled hold-music clip, decoded once per worker (48 kHz mono int16), with its
    quiet lead-in and fade-out trimmed: looped, it never goes silent on the caller."""
    frames = [f async for f in audio_frames_from_file(BuiltinAudioClip.HOLD_MUSIC.path(), sample_rate=RATE)]
    pcm = np.concatenate([np.frombuffer(f.data, dtype="<i2") for f in frames])
    step = RATE // 50  # 20 ms
    loud = [i for i in range(0, len(pcm) - step, step) if rms_dbfs(pcm[i : i + step]) > min_dbfs]
    return pcm[loud[0] : loud[-1] + step].copy() if loud else pcm


def _chunks(samples: np.ndarray) -> list[np.ndarray]:
    return [samples[i : i + PUSH] for i in range(0, len(samples), PUSH)]


HOLD_QUEUE_MS = 1000
PUBLISH_RETRY_S = 1.0
ANNOUNCE_WAIT_S = 1.0  # the hold starts with its announcement if it is synthesized by then, else with music
STALE_S = 15.0  # a text written longer ago than this (a job that joined late) is not said any more


class HoldAudio:
    """Follows the room's `CallRoomState`: a level, so a job that (re)joins resumes it.

    While `hold`: the announcement (synthesized through the gateway), then the music, with the
    reminder spoken every `remind_every_s`; when the hold ends, `say` ("you're back with A"). Each
    text once per hold episode. Speech goes out on the same track as the music, so the caller (and
    a caller bridged in by phone) hears it exactly where it would hear the music, and nobody else.

    The track is in the room only while it plays (`media.track`: a published track is encoded even
    when silent, ~2.3 % of a core per call, measured); publishing it is part of the hold's start,
    inside the control plane's bounded wait for its first frame. (livekit-agents'
    BackgroundAudioPlayer mixes and encodes silence continuously for the same reason; its bundled
    clip is what plays here.)"""

    def __init__(
        self, room: rtc.Room, spec: CallJob, reporter: Reporter, clip: np.ndarray, gateway: FunctionsGateway
    ) -> None:
        self.room = room
        self.spec = spec
        self.reporter = reporter
        self.clip = clip
        self.gateway = gateway
        # A second of music queued ahead: a job process that waits that long for the CPU on a busy
        # machine is not heard (WebRTC's capture thread keeps taking from the queue meanwhile).
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=HOLD_QUEUE_MS)
        self.track = OnDemandTrack(room, "Hold audio", self.source)
        self._playing: asyncio.Task | None = None
        self._speaking: asyncio.Task | None = None  # `say` after a hold
        self._releasing: asyncio.Task | None = None
        self._said: set[tuple[str, str]] = set()  # (episode, which text) already said

    async def start(self) -> HoldAudio:
        self.room.on("room_metadata_changed", lambda _old, new: self.follow(new))
        self.follow(self.room.metadata)
        return self

    def follow(self, metadata: str) -> None:
        try:
            state = CallRoomState.model_validate_json(metadata or "{}")
        except ValueError:
            log.warning("%s: unreadable room metadata %r", self.room.name, metadata[:100])
            return
        if state.hold and self._playing is None:
            if self._speaking:
                self._speaking.cancel()
            self._playing = asyncio.ensure_future(self._hold(state))  # reports hold_started with its first frame
        elif not state.hold and self._playing is not None:
            self._playing.cancel()
            self._playing = None
            self.source.clear_queue()  # stop now, not after what is buffered
            self.reporter.post(MediaEvent(call_id=self.spec.call_id, event="hold_stopped"))
        if not state.hold and state.say and self._once(state, "say"):
            self._speaking = asyncio.ensure_future(self._say(state.say))
        if not state.hold:
            self._release_when_quiet()

    def _release_when_quiet(self) -> None:
        """The track leaves the room once nothing plays on it (a `say` after the hold finishes first)."""

        async def release() -> None:
            if self._speaking is not None:
                await asyncio.wait([self._speaking])
            if self._playing is None and (self._speaking is None or self._speaking.done()):
                await self.track.unpublish()

        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.ensure_future(release())

    def _once(self, state: CallRoomState, which: str) -> bool:
        """True the first time a fresh text of this episode comes up."""
        key = (state.episode, which)
        if key in self._said or time.time() - state.at > STALE_S:
            return False
        self._said.add(key)
        return True

    async def _hold(self, state: CallRoomState) -> None:
        """The announcement (if synthesized within ANNOUNCE_WAIT_S; else it cuts in when ready), then
        the music, with a reminder every `remind_every_s`."""
        started = False
        speech: list[asyncio.Task] = []
        publishing = asyncio.ensure_future(self.track.publish())  # while the announcement is synthesized
        try:
            if state.announce and self._once(state, "announce"):
                speech.append(asyncio.ensure_future(self._synthesize(state.announce)))
                await asyncio.wait(speech, timeout=ANNOUNCE_WAIT_S)
            loop = asyncio.get_running_loop()
            every = state.remind_every_s if state.remind else 0.0
            remind_at = loop.time() + every
            clip = self.clip
            usable = len(clip) - len(clip) % FRAME
            pos = 0
            while True:  # the hold is a level: it plays once the track is out, however long that takes
                try:
                    await publishing
                    break
                except Exception as e:  # LiveKit did not answer in time (a room going away ends the job)
                    log.warning("%s: hold track not published, trying again: %s", self.room.name, e)
                    await asyncio.sleep(PUBLISH_RETRY_S)
                    publishing = asyncio.ensure_future(self.track.publish())
            while True:
                if speech and speech[0].done():
                    samples = speech.pop(0).result()
                    chunks = _chunks(samples) if samples is not None else []
                elif every and loop.time() >= remind_at:
                    remind_at += every
                    speech.append(asyncio.ensure_future(self._synthesize(state.remind)))
                    continue
                else:
                    chunks = [clip[pos : min(pos + PUSH, usable)]]
                    pos = pos + PUSH if pos + PUSH < usable else 0
                for chunk in chunks:
                    await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))
                    if not started:
                        started = True
                        self.reporter.post(MediaEvent(call_id=self.spec.call_id, event="hold_started"))
        finally:
            for task in speech:
                task.cancel()

    async def _say(self, text: str) -> None:
        samples = await self._synthesize(text)
        if samples is None:
            return
        try:
            await self.track.publish()
        except Exception as e:  # the caller is back with A meanwhile: the words are left out
            log.warning("%s: %r not said, the track was not published: %s", self.room.name, text[:60], e)
            return
        for chunk in _chunks(samples):
            await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))
        # Up to HOLD_QUEUE_MS of it is still queued: the track may leave only once it has been heard
        # (a run heard "You're back." of "You're back with …" when it left at once).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.source.wait_for_playout(), HOLD_QUEUE_MS / 1000 + 2.0)

    async def _synthesize(self, text: str) -> np.ndarray | None:
        """48 kHz speech in whole frames, or None: a failing TTS leaves the caller with the music only."""
        try:
            result = await self.gateway.synthesize_speech(SpeechRequest(text=text))
            pcm, rate = read_wav(result.audio_wav)
            samples = np.frombuffer(resample(pcm, rate, RATE), dtype="<i2")
        except Exception as e:
            log.warning("%s: caller announcement not synthesized, music only: %s", self.room.name, e)
            return None
        return np.concatenate([samples, np.zeros((-len(samples)) % FRAME, dtype="<i2")])

    async def aclose(self) -> None:
        for task in (self._playing, self._speaking, self._releasing):
            if task:
                task.cancel()
        with contextlib.suppress(Exception):
            await self.source.aclose()


# --- the consult job --------------------------------------------------------------------------------


class BriefSpeaker:
    """Synthesizes the brief as soon as the job starts, speaks it when B subscribes; speaks the answers
    to B's questions (`play`), which cut off whatever was playing."""

    def __init__(self, room: rtc.Room, spec: ConsultJob, deps: JobDeps, reporter: Reporter) -> None:
        self.room = room
        self.spec = spec
        self.deps = deps
        self.reporter = reporter
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=300)
        # Published when B arrives (B subscribes at once, which starts the brief), not before: until
        # then nobody may hear it, and a published track is encoded even when silent (media.track).
        self.track = OnDemandTrack(room, "Transfer briefing", self.source)
        self._listening = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._playing: asyncio.Task | None = None

    def text(self) -> str:
        return self.spec.summary.brief or "Incoming warm transfer. No summary is available yet."

    async def start(self) -> BriefSpeaker:
        audio = asyncio.ensure_future(self._synthesize())  # before B arrives: ready when B listens
        self._keep(audio)
        self.audio_ready = audio
        # Set before publishing, so nobody but B can subscribe, even briefly.
        self.room.local_participant.set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[
                rtc.ParticipantTrackPermission(participant_identity=self.spec.target, allow_all=True)
            ],
        )
        self.room.on("local_track_subscribed", lambda _t: self._listening.set())  # only B can subscribe
        self.room.on("participant_connected", self._joined)
        if self.spec.target in self.room.remote_participants:
            await self._b_arrived()
        self._keep(asyncio.ensure_future(self._speak(audio)))
        return self

    def _keep(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _joined(self, p: rtc.RemoteParticipant) -> None:
        if p.identity == self.spec.target:
            self._keep(asyncio.ensure_future(self._b_arrived()))

    async def _b_arrived(self) -> None:
        """B gets the card (data messages are not stored: it is sent on arrival), then the voice."""
        await self.send_card()
        try:
            await self.track.publish()
        except Exception as e:  # B still has the card: a text-only brief
            log.warning("briefing track for %s not published: %s", self.spec.transfer_id, e)
            await self._event("brief_failed", f"{type(e).__name__}: {e}")

    async def send_card(self) -> None:
        msg = SummaryCard(payload=SummaryCardPayload(transfer_id=self.spec.transfer_id, summary=self.spec.summary))
        with contextlib.suppress(Exception):
            await self.room.local_participant.publish_data(
                json.dumps(msg.model_dump(mode="json")),
                reliable=True,
                topic=TOPIC,
                destination_identities=[self.spec.target],
            )

    async def _synthesize(self) -> np.ndarray | None:
        try:
            result = await self.deps.gateway.synthesize_speech(SpeechRequest(text=self.text()))
            pcm, rate = read_wav(result.audio_wav)
            return np.frombuffer(resample(pcm, rate, RATE), dtype="<i2")
        except Exception as e:  # a failing TTS degrades to a text-only brief; the call goes on
            log.warning("briefing TTS failed for %s, text-only brief: %s", self.spec.transfer_id, e)
            await self._event("brief_failed", f"{type(e).__name__}: {e}")
            return None

    async def _speak(self, audio: asyncio.Task) -> None:
        await self._listening.wait()
        samples = await audio
        if samples is None or self._playing is not None:
            return  # no voice; or B asked before the brief began: the answer is not cut off ("summary?" asks for it)
        await self._event("brief_started")
        if await self.play(samples):
            await self._event("brief_done")

    async def play(
        self, samples: np.ndarray | AsyncIterator[np.ndarray], first_frame: asyncio.Event | None = None
    ) -> bool:
        """Speak `samples` (48 kHz int16, or pieces of it as they are synthesized) to B, cutting off
        whatever was playing (the brief, an earlier answer): B asked, so the answer goes first. True when
        it played to the end, False when a later `play` cut it off or its track could not be published.
        `first_frame` is set once its first frame is queued."""
        if self._playing is not None:
            self._playing.cancel()
        self.source.clear_queue()
        try:
            await self.track.publish()  # B asked, so B is here and it is already out; a no-op then
        except Exception as e:  # the answer is still on B's card
            log.warning("briefing track for %s not published, answer not spoken: %s", self.spec.transfer_id, e)
            return False
        task = self._playing = asyncio.ensure_future(self._push(samples, first_frame))
        try:
            await task
            return True
        except asyncio.CancelledError:
            if task.cancelled() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return False  # cut off by a later answer; this caller goes on
            raise

    async def _push(self, samples: np.ndarray | AsyncIterator[np.ndarray], first_frame: asyncio.Event | None) -> None:
        pieces = samples if isinstance(samples, AsyncIterator) else _one(samples)
        async for piece in pieces:
            piece = np.concatenate([piece, np.zeros((-len(piece)) % FRAME, dtype="<i2")])
            for i in range(0, len(piece), PUSH):
                chunk = piece[i : i + PUSH]
                await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))
                if first_frame is not None:
                    first_frame.set()

    async def _event(self, event: str, detail: str = "") -> None:
        spec = self.spec
        await self.reporter.send(
            MediaEvent(call_id=spec.call_id, transfer_id=spec.transfer_id, event=event, detail=detail[:300])
        )

    async def aclose(self) -> None:
        for t in [*self._tasks, *([self._playing] if self._playing else [])]:
            t.cancel()
        with contextlib.suppress(Exception):
            await self.source.aclose()


async def _one(samples: np.ndarray) -> AsyncIterator[np.ndarray]:
    yield samples


# --- both jobs ---------------------------------------------------------------------------------------


async def run_job(ctx: JobContext, spec: CallJob | ConsultJob, deps: JobDeps) -> None:
    """Join the room, start the job's audio (hold audio, or the brief), transcribe if asked, and stay
    until the room ends or the worker stops the job; everything it started is closed, bounded."""
    reporter = deps.reporter(spec.control_url)
    stop = _stop_event(ctx)
    transfer_id = spec.transfer_id if isinstance(spec, ConsultJob) else None
    # Where this job's transcription and speech ran (and any fallback) is reported to the control plane.
    functions = FunctionReports(deps.gateway, reporter, spec.call_id, transfer_id).start()
    listener = None
    qa: BriefingQA | None = None
    media: HoldAudio | BriefSpeaker | None = None
    try:
        # One of the worker's few connect slots: joined and published, the next job may start.
        async with deps.slots.slot() as waited:
            subscribe = AutoSubscribe.AUDIO_ONLY if spec.transcribe else AutoSubscribe.SUBSCRIBE_NONE
            await ctx.connect(auto_subscribe=subscribe)
            if isinstance(spec, CallJob):
                media = await HoldAudio(ctx.room, spec, reporter, deps.hold_clip, deps.gateway).start()
            else:
                media = await BriefSpeaker(ctx.room, spec, deps, reporter).start()
        log.info("media job joined %s (waited %.2f s for a connect slot)", ctx.room.name, waited)
        # A consult job says whom it briefs: the control plane replaces one dispatched for an earlier offer.
        target = spec.target if isinstance(spec, ConsultJob) else ""
        await reporter.send(MediaEvent(call_id=spec.call_id, transfer_id=transfer_id, event="joined", detail=target))
        if spec.transcribe:
            if isinstance(media, BriefSpeaker):
                # The brief first: its synthesis must not share the cores with Whisper loading for the
                # consult's transcript (this job's first utterance loads it). Measured in CI with both
                # at once on a busy machine: B heard nothing for over 20 s.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(media.audio_ready), BRIEF_FIRST_S)
                if isinstance(spec, ConsultJob) and spec.answer_questions:
                    qa = BriefingQA(spec, deps.gateway, media, reporter, timeout_s=deps.qa_timeout_s)
            listener = _listener(ctx, spec, deps, reporter, qa)
        await _until_disconnected(ctx.room, stop)
    finally:
        if listener:
            # A consult ends with its room; the call's last words matter more (they feed the summary).
            await listener.aclose(drain_s=1.0 if transfer_id else 3.0)
        if qa:
            qa.close()
        if media:
            await media.aclose()
        functions.close()
        await reporter.aclose()
