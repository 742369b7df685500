"""How the control plane drives the media plane, without ever joining a room:

- jobs are dispatched by agent name (AgentDispatchService) with their spec as metadata;
- hold audio is the call room's metadata (`CallRoomState`), which the call job follows;
- what the jobs did comes back as reports (`on_report`), what LiveKit saw as webhooks;
- which jobs each worker runs comes as its heartbeat (`on_heartbeat`).

A job that leaves while its room still needs it (a worker died) is dispatched again; a room keeps
at most one dispatch in flight, so a burst of webhooks cannot start two jobs for one room. A job
whose worker went silent, or whose worker no longer lists it (its process died), is "lost": its
participant is a ghost that LiveKit would keep for 15 s, so the orchestrator removes it, and the
`participant_left` that follows dispatches the job again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from control.rooms import Rooms
from functions.errors import ServiceError
from functions.media_protocol import (
    WORKER_SILENT_S,
    WORKER_STUCK_S,
    CallJob,
    CallRoomState,
    ConsultJob,
    JobEnvelope,
    JobRef,
    MediaEvent,
    WorkerHeartbeat,
    job_identity,
    media_identity,
)
from functions.models import Call, CallSummary, TranscriptSegment, Transfer
from functions.qa.briefing_qa import bound_transcript
from functions.settings import Settings

log = logging.getLogger(__name__)
REDISPATCH_GRACE_S = 8.0  # a dispatched job normally joins in well under a second
REDISPATCH_MAX_S = 30.0  # the longest pause between dispatches of a job that never arrives


class MediaControl:
    def __init__(
        self,
        settings: Settings,
        rooms: Rooms,
        *,
        transcript: Callable[[str], list[TranscriptSegment]] = lambda _call_id: [],
    ) -> None:
        self.settings = settings
        self.rooms = rooms
        self.transcript = transcript  # call_id → the call's transcript, for B's questions to the briefing
        self._joined: dict[str, asyncio.Event] = {}  # identity → the job joined
        self._hold_on: dict[str, asyncio.Event] = {}  # call_id → hold audio is playing
        self._dispatched_at: dict[str, float] = {}  # identity → when we last dispatched it
        self.redispatches = 0
        self._checking: set[str] = set()  # job identities whose presence is being checked
        self.listening: set[tuple[str, str]] = set()  # (room job identity, speaker) whose audio a job reads
        self._workers: dict[str, float] = {}  # worker id → its last heartbeat
        self._held: set[str] = set()  # workers whose last beat said their liveness connection is open
        self._owner: dict[str, tuple[str, str, float]] = {}  # job identity → (worker id, room, last listed)
        self._joined_at: dict[str, float] = {}  # job identity → when its latest job reported "joined"
        self.lost_jobs = 0

    @property
    def control_url(self) -> str:
        s = self.settings
        return s.control_url or f"http://{s.app_host}:{s.app_port}"

    # --- jobs --------------------------------------------------------------------------------------
    def call_job(self, call: Call) -> tuple[str, str]:
        """(agent name, metadata) of the call's job, for `Rooms.create_room(job=...)`."""
        spec = CallJob(
            call_id=call.call_id,
            caller_identity=call.caller_identity,
            control_url=self.control_url,
            transcribe=self.settings.live_transcription,
        )
        return self._job(spec)

    def consult_job(self, transfer: Transfer, call: Call, summary: CallSummary) -> tuple[str, str]:
        qa = self.settings.briefing_qa and self.settings.live_transcription  # questions are heard by transcribing
        spec = ConsultJob(
            call_id=call.call_id,
            caller_identity=call.caller_identity,
            control_url=self.control_url,
            transcribe=self.settings.live_transcription,
            transfer_id=transfer.transfer_id,
            target=transfer.target,
            summary=summary,
            transcript=bound_transcript(self.transcript(call.call_id)) if qa else [],
            answer_questions=qa,
        )
        return self._job(spec)

    def _job(self, spec: CallJob | ConsultJob) -> tuple[str, str]:
        self._job_dispatched(spec.identity)
        return self.settings.media_agent_name, JobEnvelope(job=spec).model_dump_json()

    def _job_dispatched(self, identity: str) -> None:
        self._joined.setdefault(identity, asyncio.Event()).clear()
        self._dispatched_at[identity] = time.monotonic()

    async def redispatch_call_job(self, call: Call) -> None:
        await self.rooms.dispatch(call.room, *self.call_job(call))

    async def redispatch_consult_job(self, transfer: Transfer, call: Call, summary: CallSummary) -> None:
        await self.rooms.dispatch(transfer.consult_room, *self.consult_job(transfer, call, summary))

    async def wait_joined(self, identity: str, timeout: float) -> bool:
        ev = self._joined.setdefault(identity, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def job_left(self, room: str, identity: str, redispatch: Callable[[], Awaitable[bool]]) -> None:
        """A job participant left `room`, or never arrived, while it is still needed: dispatch it
        again, and again with growing pauses (REDISPATCH_GRACE_S doubling up to REDISPATCH_MAX_S),
        until it is there or no longer needed. Once is not enough: LiveKit drops a dispatch that no
        registered worker can take (none yet: the app starts faster than a worker; or all full). A
        dispatch still within its pause gets the rest of it first (a job whose WebRTC connection
        fails never joins, so nothing else would notice it is missing). `redispatch()` says whether
        it dispatched: False when its owner no longer needs the job."""
        if identity in self._checking:
            return  # one check per job at a time: the hold path and the webhook may both ask
        self._checking.add(identity)
        try:
            pause, attempt = REDISPATCH_GRACE_S, 0
            while True:
                since = time.monotonic() - self._dispatched_at.get(identity, 0.0)
                joined = self._joined.setdefault(identity, asyncio.Event())
                if since < pause and not joined.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(joined.wait(), pause - since)
                if not await self.rooms.room_exists(room):
                    return  # the room is gone (the call or consult ended): nothing to dispatch into
                if identity in await self.rooms.identities(room):
                    return  # there (it joined, or the same identity rejoined)
                if attempt % 5 == 0:  # not every attempt: a call without a worker would flood the log
                    log.warning("media job %s missing from %s while needed: dispatching it again", identity, room)
                if not await redispatch():
                    return  # the owner no longer needs it (the call ended, the consult was answered)
                self.redispatches += 1
                attempt += 1
                pause = min(pause * 2, REDISPATCH_MAX_S)
        except ServiceError as e:
            log.error("could not re-dispatch %s to %s: %s", identity, room, e)
        finally:
            self._checking.discard(identity)

    def replacing(self, identity: str) -> None:
        """The control plane takes this job out on purpose, for a new one (a queue transfer's next
        offer): its worker no longer listing it is not a loss to repair."""
        self._joined_at[identity] = time.monotonic()

    # --- hold audio -----------------------------------------------------------------------------------
    async def set_hold(self, call: Call, on: bool, *, wait_s: float = 0.0, speech: CallRoomState | None = None) -> bool:
        """Ask the call job for hold audio (or silence), with what it says to the caller (`speech`:
        the texts of a `CallRoomState`). With `wait_s`, wait until it plays."""
        ev = self._hold_on.setdefault(call.call_id, asyncio.Event())
        if on:
            ev.clear()
        state = (speech or CallRoomState()).model_copy(update={"hold": on, "at": time.time()})
        await self.rooms.set_metadata(call.room, state.model_dump_json())
        if not on or wait_s <= 0:
            return True
        try:
            await asyncio.wait_for(ev.wait(), wait_s)
            return True
        except TimeoutError:
            return False

    # --- worker liveness -------------------------------------------------------------------------------
    def on_heartbeat(self, beat: WorkerHeartbeat) -> list[JobRef]:
        """Record what the worker runs; returns the jobs it listed before and no longer does."""
        now = time.monotonic()
        mine = {i: o for i, o in self._owner.items() if o[0] == beat.worker_id}
        if beat.stopping:  # its jobs leave their rooms themselves; the webhooks take it from there
            self._workers.pop(beat.worker_id, None)
            self._held.discard(beat.worker_id)
            for identity in mine:
                del self._owner[identity]
            return []
        self._workers[beat.worker_id] = now
        if beat.held:
            self._held.add(beat.worker_id)
        else:
            self._held.discard(beat.worker_id)
        listed = {j.identity for j in beat.jobs}
        lost = self._take_lost({i: o for i, o in mine.items() if i not in listed})
        for j in beat.jobs:
            self._owner[j.identity] = (beat.worker_id, j.room, now)
        return lost

    def on_worker_gone(self, worker_id: str) -> list[JobRef]:
        """The worker's liveness connection broke (the process died): its jobs, lost at once."""
        if self._workers.pop(worker_id, None) is None:
            return []  # stopped cleanly (its goodbye came first), or never beat here
        self._held.discard(worker_id)
        log.warning("media worker %s: its liveness connection broke, its jobs are lost", worker_id)
        return self._take_lost({i: o for i, o in self._owner.items() if o[0] == worker_id})

    def silent_workers(self, lag_s: float = 0.0) -> list[JobRef]:
        """The jobs of workers that have not beaten for WORKER_SILENT_S, or WORKER_STUCK_S while they
        hold their liveness connection (alive, only late), each reported once.
        `lag_s`: how late the caller's own loop ran. A control plane that was itself too busy to
        take the beats cannot tell a dead worker from a late beat, so that time is not counted:
        removing a live job's participant would cut a caller's hold audio for nothing."""
        now = time.monotonic()
        if lag_s > 0:
            for w in self._workers:
                self._workers[w] += lag_s
        silent = {
            w for w, t in self._workers.items() if now - t > (WORKER_STUCK_S if w in self._held else WORKER_SILENT_S)
        }
        for w in silent:
            self._held.discard(w)
            log.warning("media worker %s silent for %.1fs: its jobs are lost", w, now - self._workers.pop(w))
        return self._take_lost({i: o for i, o in self._owner.items() if o[0] in silent})

    def _take_lost(self, owned: dict[str, tuple[str, str, float]]) -> list[JobRef]:
        lost = []
        for identity, (_worker, room, listed_at) in owned.items():
            del self._owner[identity]
            # A job that joined after its old worker last listed it is a new one (the same identity
            # rejoined elsewhere, and LiveKit already replaced the ghost): it is not lost.
            if self._joined_at.get(identity, 0.0) <= listed_at:
                lost.append(JobRef(room=room, identity=identity))
        self.lost_jobs += len(lost)
        return lost

    # --- reports ----------------------------------------------------------------------------------------
    def on_event(self, event: MediaEvent) -> None:
        if event.event == "joined":
            identity = job_identity(event.call_id, event.transfer_id)
            self._joined.setdefault(identity, asyncio.Event()).set()
            self._joined_at[identity] = time.monotonic()
        elif event.event == "listening":
            identity = job_identity(event.call_id, event.transfer_id)
            self.listening.add((identity, event.detail))
        elif event.event == "hold_started":
            self._hold_on.setdefault(event.call_id, asyncio.Event()).set()
        elif event.event == "hold_stopped":
            self._hold_on.setdefault(event.call_id, asyncio.Event()).clear()

    def forget_call(self, call_id: str) -> None:
        self._hold_on.pop(call_id, None)
        self._joined_at.pop(media_identity(call_id), None)
        self._joined.pop(media_identity(call_id), None)
        self._dispatched_at.pop(media_identity(call_id), None)
