"""The warm-transfer orchestrator: the only place that sequences rooms, tokens and media
jobs, and the only place that retries. It never joins a room: audio is the media plane's
(control.media_control dispatches its jobs), and what happens in the rooms comes back as
LiveKit webhooks and job reports (`on_livekit_event`, `on_media_report`).

One transfer (see ARCHITECTURE in the README):
  initiate  → consult room created, hold audio in the caller's room (the call job plays it),
              A's publish and subscribe permissions in the call room revoked (server-enforced:
              the caller cannot hear A, A cannot hear the caller), a consult job dispatched
              with the brief.
  accept    → B may join the caller's room; once B's microphone is published there
              (webhook), hold audio stops, A is removed, the consult room is deleted.
  decline / cancel / timeout / B leaves → consult deleted, hold stops, A's permissions
              restored: the caller is back with A. A queue or hunt-list transfer is first offered
              to the next agent (control.routing); only when nobody is left does it end.
  introduce → three-way: B joins the caller's room with A still there; once B's microphone is
              in, hold stops and A hears and talks again; A leaves (or INTRO_LIMIT_S passes):
              completed.
The caller never changes room. Every transition is persisted (with its event) before
anyone is told about it. Actions on one call are serialized (one lock per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from livekit import api

from control.announcements import back_speech, hold_speech
from control.bus import EventBus
from control.consult_qa import ConsultQA
from control.media_control import MediaControl
from control.names import normalize_name
from control.presence import LOBBY, Presence
from control.reconciler import Reconciler
from control.rooms import Rooms
from control.routing import CallQueue, destination, first_target, next_target
from control.state_machine import ROLLBACK_STATES, check_transition
from control.store import Store
from control.transcripts import Transcripts
from control.wiring import Follower, follow
from functions.background import Background
from functions.errors import (
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    LiveKitError,
    NotFound,
    ServiceError,
    StorageUnavailable,
)
from functions.events import (
    CallStatusChanged,
    CallStatusPayload,
    OfferMoved,
    OfferMovedPayload,
    TransferChanged,
    TransferPayload,
)
from functions.gateway import FunctionsGateway, make_gateway, merge_status
from functions.media_protocol import (
    HEARTBEAT_S,
    FunctionsReport,
    JobRef,
    MediaEvent,
    MediaReport,
    QAReport,
    SegmentReport,
    TranscriptionStatus,
    WorkerGone,
    WorkerHeartbeat,
    briefing_identity,
    media_identity,
)
from functions.models import (
    Call,
    CallStatus,
    CallSummary,
    FunctionStatus,
    Role,
    SummarizeRequest,
    TargetKind,
    TokenRequest,
    TokenResponse,
    Transfer,
    TransferInfo,
    TransferState,
    is_agent_identity,
)
from functions.services import Services
from functions.summary.summarization import OfflineSummarizer, Refresh
from functions.tokens import mint_token

log = logging.getLogger(__name__)
S = TransferState
ENDED_NOTICE_S = 0.3  # an ended call's room outlives its "ended" notice by this much

SummarySource = Callable[[Call], CallSummary]
T = TypeVar("T")


class PhoneLeg(Protocol):
    """The telephony side of a phone transfer (see control.phone_bridge)."""

    def normalize(self, number: str) -> str:
        """Return the E.164 form, or raise InvalidInput (nothing dialed)."""
        ...

    async def start(self, transfer: Transfer, summary: CallSummary) -> None:
        """Dial the target; the whisper and accept/decline happen through webhooks."""
        ...

    async def stop(self, transfer: Transfer) -> None:
        """Hang up the outbound leg if it is still up (transfer ended without bridging)."""
        ...

    def room_identity(self, transfer: Transfer) -> str | None:
        """Identity the bridged leg gets in the caller's room (SIP), or None without SIP."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How the orchestrator retries a LiveKit call that failed retryably, and how long a state change
    nobody is waiting for (a timer, a departure, the hand-off) waits out a database that cannot be
    written: a value, not literals."""

    attempts: int = 3
    base_delay_s: float = 0.2
    storage_every_s: float = 0.5
    storage_for_s: float = 600.0

    def delay(self, attempt: int) -> float:
        return self.base_delay_s * 2**attempt


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class TransferOrchestrator:
    def __init__(
        self,
        services: Services,
        store: Store,
        rooms: Rooms,
        *,
        summary_source: SummarySource | None = None,
        phone: PhoneLeg | None = None,
        retry: RetryPolicy = RetryPolicy(),
        gateway: FunctionsGateway | None = None,
        presence: Presence | None = None,
        bus: EventBus | None = None,
        followers: Sequence[Follower] = (),
    ) -> None:
        """`bus`: where its notifications go in process (the app context's; its own when built alone);
        `followers`: the app's own handlers of them (the UI's), subscribed with its parts'."""
        self.services = services
        self.settings = services.settings
        self.store = store
        self.rooms = rooms
        self.gateway = gateway or make_gateway(self.settings, services)
        self.media = MediaControl(self.settings, rooms, transcript=store.segments)
        # The LLM refresh is bounded by the LLM's own timeout, plus a second for the gateway's hop.
        self.transcripts = Transcripts(
            store, rooms, self._summary_refresh, refresh_timeout_s=self.settings.llm_timeout_s + 1.0
        )
        self.media_functions: dict[str, FunctionStatus] = {}  # function → newest status the media jobs reported
        self.summary_source = summary_source or self.transcripts.summary_for
        self.retry = retry
        self.phone = phone
        self._timers: dict[str, dict[str, asyncio.Task]] = {}  # transfer_id → name → timer
        self._locks: dict[str, asyncio.Lock] = {}  # call_id → lock: actions on one call are serialized
        self._arrivals: dict[tuple[str, str], asyncio.Event] = {}  # (room, identity) → microphone published
        self._caller_lost: dict[str, asyncio.Task] = {}  # call_id → ends the call unless the caller rejoins
        self._target_lost: dict[str, asyncio.Task] = {}  # transfer_id → rolls back unless B rejoins the consult
        self._background = Background()
        self.bus = bus if bus is not None else EventBus()
        self.consult_qa = ConsultQA(store, rooms, self.bus)  # B's questions to the briefing
        self.removed_joins = 0  # participants removed because the state did not allow them in
        # Who is available (from the lobby, the store and the offers), and the calls waiting for an agent.
        self.presence = presence or Presence(self.settings, store, rooms)
        self.calls = CallQueue(self.settings, self.presence, rooms, self.assign_agent)
        # Its parts and the app's followers follow its notifications: control/wiring.py says who and in which order.
        self._unfollow = follow(self.bus, self.presence, self.calls, followers)
        # Media follows state: what LiveKit has is compared with the store and repaired (control.reconciler).
        self.reconciler = Reconciler(self, interval_s=self.settings.reconcile_interval_s)

    def _summary_refresh(self) -> Refresh | None:
        """The rolling summaries' LLM refresh, through the gateway (on Modal with FUNCTIONS_BACKEND=modal,
        whose summarizer may be an LLM); none when the summary here is the offline extraction only."""
        if self.settings.functions_backend != "modal" and isinstance(self.services.summarizer, OfflineSummarizer):
            return None
        gateway = self.gateway

        async def refresh(segments: list) -> CallSummary:
            return await gateway.summarize(SummarizeRequest(segments=segments))

        return refresh

    @property
    def function_status(self) -> list[FunctionStatus]:
        """Where each service function last ran: this control plane's gateway and its media jobs' (newest wins)."""
        return merge_status(self.gateway.function_status, self.media_functions.values())

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the agents' lobby and re-attach to calls and transfers left open by a previous run."""
        await self.ensure_lobby()
        await self.presence.start()
        await self.recover()
        self._background.spawn(self._watch_workers())
        if self.reconciler.interval_s > 0:
            self._background.spawn(self.reconciler.run())

    async def aclose(self) -> None:
        self._unfollow()  # the bus may outlive this orchestrator (the app context's)
        for timers in self._timers.values():
            for t in timers.values():
                t.cancel()
        self._background.cancel()
        self.transcripts.background.cancel()
        await self._background.wait(timeout=2.0)  # bounded: cancelled tasks finish before their clients close
        await self.calls.aclose()
        await self.presence.aclose()

    async def recover(self) -> None:
        """After a restart of the control plane. Calls and consults lived on in LiveKit (the media
        jobs kept playing); this re-arms timers, and re-dispatches jobs that are missing."""
        live = {r.name for r in await self.rooms.list_rooms()}
        for t in self.store.list_transfers(open_only=True):
            if t.state is S.idle:  # crashed mid-initiate: nothing reliable was set up
                await self._finish(t.transfer_id, S.failed, actor="system", reason="interrupted by a restart")
            elif t.state is S.consulting:
                self._arm_timeouts(t.transfer_id, ring=False, routed=bool(t.route))
                if t.target_kind is TargetKind.agent and t.consult_room in live:
                    self._background.spawn(self._ensure_consult_job(t))
            elif t.state is S.completing:
                self._background.spawn(self._finish_handoff(t.transfer_id))
            elif t.state is S.introducing:
                self._background.spawn(self._finish_introduction(t.transfer_id))
        waiting = [c for c in self.store.list_calls() if c.status is CallStatus.waiting and c.room in live]
        await self.calls.recover(waiting)
        for call in self.store.list_calls():
            if call.room not in live:
                self._background.spawn(
                    self._stored(lambda c=call: self.end_call(c.call_id, actor="system", reason="call room gone"))
                )
            else:
                self._background.spawn(self._ensure_call_job(call))

    # --- calls ----------------------------------------------------------------------------
    async def start_call(
        self, caller_name: str = "", *, agent_identity: str | None = None, pick: str | None = None
    ) -> Call:
        """A new call: with `agent_identity` (an agent starting it), else it waits for an agent and
        rings one (`pick`, the caller's choice, or the agent idle longest: `control.routing.CallQueue`)."""
        caller_name = normalize_name(caller_name, field="caller name")
        if agent_identity is not None:
            _check_agent(agent_identity)
        else:
            self.calls.check_pick(pick)  # refused before anything exists
        call_id = _new_id()
        room = f"call-{call_id}"
        call = Call(
            call_id=call_id,
            room=room,
            caller_identity=f"caller-{call_id}",
            caller_name=caller_name,
            agent_identity=agent_identity,
            status=CallStatus.active if agent_identity else CallStatus.waiting,
        )
        async with self._lock(call_id):  # the reconciler never sees the row without its room
            # The row first: a room never exists without its call (a failure below ends the call).
            call = self.store.add_call(call)
            try:
                # Created with its call job: the media plane is there before the caller is.
                job = self.media.call_job(call)
                await self._retry(lambda: self.rooms.create_room(room, empty_timeout=120, job=job))
            except ServiceError:
                self.store.update_call(call_id, status=CallStatus.ended)
                await self._safe(self.rooms.delete_room(room))
                raise
        # A dispatch the server drops (a worker that did not answer in time) never joins, so no
        # webhook would tell: checked once its grace period is over, re-dispatched if missing.
        self._background.spawn(self._ensure_call_job(call))
        await self._notify_call(call)
        if agent_identity is None:
            await self.calls.add(call, pick)
        return call

    async def assign_agent(self, call_id: str, agent: str) -> Call:
        _check_agent(agent)
        async with self._lock(call_id):
            call = self.store.get_call(call_id)
            if call.status is not CallStatus.waiting:
                raise Conflict(f"call {call_id} is {call.status.value}, not waiting for an agent")
            call = self.store.update_call(call_id, agent_identity=agent, status=CallStatus.active)
        await self._notify_call(call)
        return call

    async def end_call(
        self, call_id: str, *, actor: str, reason: str = "call ended", outcome: TransferState = S.caller_left
    ) -> Call:
        """End the call and its open transfer (as `outcome`), in one step under the call's lock: an
        action racing it (an initiate, an accept) runs wholly before or wholly after, never between."""
        async with self._lock(call_id):
            call = self.store.get_call(call_id)
            if call.status is CallStatus.ended:
                return call
            for t in self.store.list_transfers(call_id=call_id, open_only=True):
                state = outcome if t.state is not S.idle else S.failed  # idle: an initiate that failed
                await self._finish_locked(t.transfer_id, state, actor=actor, reason=reason, end_call=True)
            call = self.store.update_call(call_id, status=CallStatus.ended)
            if await self._notify_call(call, now=True):
                # LiveKit drops data still on its way to a room it deletes: the caller's page missed
                # "ended" when the room went at once (measured), and showed a dropped call instead.
                await asyncio.sleep(ENDED_NOTICE_S)
            await self._safe(self.rooms.delete_room(call.room))  # the call job leaves with its room
        self.media.forget_call(call_id)
        self.transcripts.forget(call_id)
        return call

    async def end_open_calls(self, reason: str, *, outcome: TransferState = S.failed) -> list[Call]:
        """End every open call with `reason` (the LiveKit server they lived on is gone, or is being
        stopped with the app): agents and callers are told, nothing stays half-open."""
        # Side by side (each under its own call's lock): a stop with many calls open stays bounded.
        return list(
            await asyncio.gather(
                *(
                    self._stored(
                        lambda c=call: self.end_call(c.call_id, actor="system", reason=reason, outcome=outcome)
                    )
                    for call in self.store.list_calls()
                )
            )
        )

    async def ensure_lobby(self) -> None:
        """The agents' lobby exists (idempotent). Joins never create rooms, so it is created here,
        at start and at every sign-in, and kept for a day after the last agent left it."""
        day = 24 * 3600
        await self._retry(lambda: self.rooms.create_room(LOBBY, empty_timeout=day, departure_timeout=day))

    def caller_token(self, call_id: str, caller_identity: str) -> TokenResponse:
        """A caller may only ever reach its own call room."""
        call = self.store.get_call(call_id)
        if caller_identity != call.caller_identity:
            raise Forbidden("a caller can only join their own call")
        if call.status is CallStatus.ended:
            raise InvalidInput(f"call {call_id} has ended")
        return self._token(call.caller_identity, call.caller_name or "Caller", Role.caller, call.room)

    def agent_token(self, agent: str, room: str, name: str = "", *, while_held: bool = False) -> TokenResponse:
        """Agents get only rooms of calls they are on, consults they are part of, and the lobby.

        `while_held`: A asks for its call room during the hold (the UI rejoining after a reload) and
        gets a token that can neither publish nor subscribe there; the rollback gives both back."""
        _check_agent(agent)
        if room == LOBBY:  # receive-only: presence and notifications
            return self._token(agent, name, Role.agent, room, can_publish=False)
        if call := self.store.call_by_room(room):
            if call.status is CallStatus.ended:
                raise InvalidInput(f"call {call.call_id} has ended")
            # The call's agent, or the target of the hand-off under way (a target of an earlier
            # transfer is the call's agent or nobody: the call may have moved on since).
            allowed = call.agent_identity == agent or any(
                t.target == agent and t.state in (S.completing, S.introducing)
                for t in self.store.list_transfers(call_id=call.call_id, open_only=True)
            )
            if not allowed:
                raise Forbidden(f"agent {agent} is not on call {call.call_id}")
            if call.status is CallStatus.on_hold and call.agent_identity == agent:
                if while_held:  # in the room, hearing and saying nothing until the hold ends
                    return self._token(agent, name, Role.agent, room, can_publish=False, can_subscribe=False)
                # A full token now would let A talk over the hold audio.
                raise Forbidden(f"call {call.call_id} is on hold while you consult; cancel the transfer to return")
            return self._token(agent, name, Role.agent, room)
        for t in self.store.list_transfers(open_only=True):
            if t.consult_room == room and t.state is S.consulting and agent in (t.from_agent, t.target):
                return self._token(agent, name, Role.agent, room)
        raise Forbidden(f"agent {agent} may not join room {room}")

    def _token(
        self, identity: str, name: str, role: Role, room: str, *, can_publish: bool = True, can_subscribe: bool = True
    ) -> TokenResponse:
        req = TokenRequest(
            identity=identity,
            name=name or identity,
            role=role,
            room=room,
            can_publish=can_publish,
            can_subscribe=can_subscribe,
        )
        return mint_token(req, self.settings)

    # --- transfers ----------------------------------------------------------------------------
    async def initiate(
        self,
        call_id: str,
        from_agent: str,
        target: str = "",
        *,
        kind: TargetKind | str | None = None,
        targets: list[str] | None = None,
    ) -> Transfer:
        """Start a warm transfer to an agent, a queue (`kind="queue"`, or `target="queue:<name>"`), a hunt
        list (`kind="hunt"`, `targets` in order) or a phone number. A target nobody can take (an unknown
        or unavailable agent, an empty queue) is refused before anything changes (control.routing)."""
        dest = destination(target, kind.value if isinstance(kind, TargetKind) else kind, targets)
        kind = TargetKind.phone if dest.kind == "phone" else TargetKind.agent
        target = dest.target
        if dest.kind == "agent":
            _check_agent(target)
            if target == from_agent:
                raise InvalidInput("cannot transfer a call to yourself")
        elif dest.kind == "phone" and self.phone is None:
            raise InvalidInput(
                "phone transfers need Twilio: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER"
            )
        elif dest.kind == "phone":
            target = self.phone.normalize(target)  # type: ignore[union-attr]  # E.164 or InvalidInput
        async with self._lock(call_id):
            call = self.store.get_call(call_id)
            if call.status is CallStatus.ended:
                raise Conflict(f"call {call_id} has ended")
            if call.agent_identity != from_agent:
                raise Forbidden(f"{from_agent} is not the agent on call {call_id}")
            if open_ := self.store.list_transfers(call_id=call_id, open_only=True):
                raise Conflict(f"call {call_id} already has an open transfer ({open_[0].transfer_id})")
            if kind is TargetKind.agent:  # who is offered first; nobody available: refused, nothing changed
                target = await first_target(dest, self.presence, from_agent)
            tid = _new_id()
            transfer = self.store.add_transfer(
                Transfer(
                    transfer_id=tid,
                    call_id=call_id,
                    call_room=call.room,
                    consult_room=f"consult-{tid}",
                    from_agent=from_agent,
                    target_kind=kind,
                    target=target,
                    route=list(dest.route),
                )
            )
            try:
                summary = self.summary_source(call)  # ready already: never a full re-summary here
                if kind is TargetKind.phone:
                    await self._retry(lambda: self.rooms.create_room(transfer.consult_room, empty_timeout=60))
                    reach_target = self.phone.start(transfer, summary)  # type: ignore[union-attr]
                else:  # the consult room comes with its job, which speaks the brief to B
                    job = self.media.consult_job(transfer, call, summary)
                    reach_target = self._retry(
                        lambda: self.rooms.create_room(transfer.consult_room, empty_timeout=60, job=job)
                    )
                # The two rooms are independent: put the caller on hold while the consult job is dispatched.
                # Both finish before any failure is raised, so the rollback finds everything they set up.
                for outcome in await asyncio.gather(
                    self._hold_caller(call, from_agent, transfer), reach_target, return_exceptions=True
                ):
                    if isinstance(outcome, BaseException):
                        raise outcome
                detail = {"target": target, **({"route": list(dest.route)} if dest.route else {})}
                transfer = self.store.transition(
                    tid, S.consulting, actor=from_agent, detail=detail, call={"status": CallStatus.on_hold}
                )
            except Exception as e:
                failure = e
            else:
                failure = None
        if failure is not None:
            # Whatever broke, undo what was set up: the caller goes back to A, nothing hangs. A database
            # that cannot be written now gets the undo later (the reconciler keeps the media meanwhile).
            def undo() -> Awaitable[Transfer]:
                return self._finish(tid, S.failed, actor="system", reason=f"initiate failed: {failure}")

            try:
                await undo()
            except StorageUnavailable:
                self._background.spawn(self._stored(undo))
            if isinstance(failure, ServiceError):
                raise failure
            raise LiveKitError(f"transfer could not start: {failure}", retryable=True) from failure
        # A phone leg's ringing is bounded by the dialer's own ring timeout.
        self._arm_timeouts(tid, ring=kind is TargetKind.agent, routed=bool(dest.route))
        if kind is TargetKind.agent:
            self._background.spawn(self._ensure_consult_job(transfer))  # as for the call job (start_call)
        await self._notify(transfer, summary=summary)
        await self._notify_call(self.store.get_call(call_id))
        return transfer

    async def _hold_caller(self, call: Call, agent: str, t: Transfer) -> None:
        """Hold audio first (the announcement, then music; bounded wait until it plays), then A is
        silenced: the caller never hears silence."""
        speech = hold_speech(self.settings, t)
        wait_s = self.settings.hold_ack_timeout_s
        if not await self._retry(lambda: self.media.set_hold(call, True, wait_s=wait_s, speech=speech)):
            log.warning("hold audio in %s not confirmed within %.1fs", call.room, self.settings.hold_ack_timeout_s)
            self._background.spawn(self._ensure_call_job(call))
        try:
            await self._retry(lambda: self.rooms.set_permissions(call.room, agent, publish=False, subscribe=False))
        except NotFound:
            pass  # A is not connected to the call room: there is nothing to silence

    async def accept(self, transfer_id: str, *, actor: str) -> Transfer:
        """B (or A on B's behalf) completes the transfer: B is let into the caller's room."""
        t = self.store.get_transfer(transfer_id)
        if actor not in (t.target, t.from_agent):
            raise Forbidden(f"{actor} is not part of transfer {transfer_id}")
        async with self._lock(t.call_id):
            t = self.store.transition(transfer_id, S.completing, actor=actor)
        self._cancel_timers(transfer_id)
        await self._notify(t, join_room=t.call_room)
        self._background.spawn(self._finish_handoff(transfer_id))
        return t

    async def decline(self, transfer_id: str, *, actor: str, reason: str = "") -> Transfer:
        """B says no (with a reason B picks). A queue or hunt-list transfer is offered to the next agent."""
        t = self.store.get_transfer(transfer_id)
        if actor != t.target:
            raise Forbidden("only the transfer's target can decline it")
        async with self._lock(t.call_id):  # an action under way on the call (an initiate) finishes first
            check_transition(self.store.get_transfer(transfer_id).state, S.declined)  # illegal: 409, no change
        moved = await self._offer_failed(transfer_id, S.declined, target=actor, actor=actor, reason=reason[:200])
        return moved or self.store.get_transfer(transfer_id)

    async def introduce(self, transfer_id: str, *, actor: str) -> Transfer:
        """Three-way introduction (A only, during the consult): B joins the caller's room while A is
        still there; once B's microphone is in, the hold stops and all three talk. A then leaves
        (`leave`), or is taken out after INTRO_LIMIT_S."""
        t = self.store.get_transfer(transfer_id)
        if actor != t.from_agent:
            raise Forbidden("only the agent who started the transfer can introduce the caller")
        if t.target_kind is not TargetKind.agent:
            raise InvalidInput("a phone target is bridged by accepting on its keypad; introduce is for agents")
        async with self._lock(t.call_id):
            t = self.store.transition(transfer_id, S.introducing, actor=actor)
        self._cancel_timers(transfer_id)
        await self._notify(t, join_room=t.call_room)
        self._background.spawn(self._finish_introduction(transfer_id))
        return t

    async def leave(self, transfer_id: str, *, actor: str) -> Transfer:
        """A leaves a three-way introduction: B stays with the caller (completed)."""
        t = self.store.get_transfer(transfer_id)
        if actor != t.from_agent:
            raise Forbidden("only the agent who introduced the caller can leave")
        return await self._end_introduction(transfer_id, actor=actor)

    async def cancel(self, transfer_id: str, *, actor: str) -> Transfer:
        t = self.store.get_transfer(transfer_id)
        if actor != t.from_agent:
            raise Forbidden("only the agent who started the transfer can cancel it")
        return await self._finish(transfer_id, S.cancelled, actor=actor)

    async def finish(self, transfer_id: str, state: TransferState, *, actor: str, reason: str = "") -> Transfer:
        """End a transfer from an outside event (a phone leg's status). Illegal → IllegalTransition."""
        return await self._finish(transfer_id, state, actor=actor, reason=reason)

    def get_transfer(self, transfer_id: str) -> Transfer:
        return self.store.get_transfer(transfer_id)

    # --- what LiveKit and the media jobs tell us ------------------------------------------------
    async def on_livekit_event(self, event: api.WebhookEvent) -> None:
        """Webhooks from the LiveKit server: quick decisions here, slow work in the background."""
        room, identity = event.room.name, event.participant.identity
        call, transfer = self._room_owner(room)
        await self.presence.on_livekit_event(event)
        if call is None and transfer is None:
            return  # not ours
        if event.event == "participant_joined" and not self._may_be_in(room, identity, call, transfer):
            # A token issued earlier outlives the state that allowed it (A after the hand-off, B after
            # a failed one, anyone with a refreshed token): the state decides who stays, not the token.
            log.warning("removing %s from %s: the current state does not allow them there", identity, room)
            self.removed_joins += 1
            self._background.spawn(self._safe(self.rooms.remove_participant(room, identity)))
            return
        on_hold = call is not None and call.status is CallStatus.on_hold
        if event.event == "participant_joined" and on_hold and identity == call.agent_identity:
            # A rejoining during hold (a reload, or a token from before the hold): hear and say nothing.
            self._background.spawn(
                self._safe(self.rooms.set_permissions(room, identity, publish=False, subscribe=False))
            )
        if event.event == "track_published" and call is not None:
            if event.track.type == api.TrackType.AUDIO and event.track.source == api.TrackSource.MICROPHONE:
                self._arrivals.setdefault((room, identity), asyncio.Event()).set()
        elif event.event == "participant_joined" and transfer is not None:
            if identity == transfer.target and transfer.state is S.consulting:
                self._target_joined(transfer.transfer_id)
                if lost := self._target_lost.pop(transfer.transfer_id, None):
                    lost.cancel()  # back within the grace period (a reload): the consult goes on
        elif event.event == "participant_joined" and call is not None and identity == call.caller_identity:
            if lost := self._caller_lost.pop(call.call_id, None):
                lost.cancel()  # back within the grace period: the call goes on
        elif event.event == "participant_left" and call is not None and call.status is not CallStatus.ended:
            if identity == call.caller_identity:
                # A reload looks like a hang-up to LiveKit (the page leaves the room): the caller gets
                # CALLER_GRACE_S to come back. Hanging up in the UI or the API ends the call at once.
                self._caller_lost[call.call_id] = self._background.spawn(self._end_if_not_back(call, identity))
            elif identity == media_identity(call.call_id):
                self._background.spawn(self._ensure_call_job(call))
            else:
                self._left_introduction(call, identity)
        elif event.event == "participant_left" and transfer is not None and transfer.state is S.consulting:
            if identity == transfer.target:
                # A reload looks like leaving to LiveKit: B gets TARGET_GRACE_S to come back. A B who
                # declines, or leaves the consult in the UI (which declines), ends it at once.
                self._target_lost[transfer.transfer_id] = self._background.spawn(
                    self._target_left_unless_back(transfer, identity)
                )
            elif identity == briefing_identity(transfer.transfer_id):
                self._background.spawn(self._ensure_consult_job(transfer))
        elif event.event == "room_finished" and call is not None and call.status is not CallStatus.ended:
            self._background.spawn(
                self._stored(lambda: self.end_call(call.call_id, actor="system", reason="call room closed"))
            )

    def _may_be_in(self, room: str, identity: str, call: Call | None, transfer: Transfer | None) -> bool:
        """Who the current state allows in one of our rooms (the webhook removes anyone else)."""
        if call is not None:
            if call.status is CallStatus.ended:
                return False
            if identity in (call.caller_identity, call.agent_identity, media_identity(call.call_id)):
                return True
            return any(
                t.state in (S.completing, S.introducing) and identity in (t.target, self._phone_identity(t))
                for t in self.store.list_transfers(call_id=call.call_id, open_only=True)
            )
        assert transfer is not None
        if transfer.state not in (S.idle, S.consulting, S.completing):
            return False
        return identity in (
            transfer.from_agent,
            transfer.target,
            briefing_identity(transfer.transfer_id),
            self._phone_identity(transfer),
        )

    def _phone_identity(self, t: Transfer) -> str | None:
        return self.phone.room_identity(t) if t.target_kind is TargetKind.phone and self.phone else None

    async def _end_if_not_back(self, call: Call, identity: str) -> None:
        await asyncio.sleep(self.settings.caller_grace_s)
        self._caller_lost.pop(call.call_id, None)
        if identity not in await self.rooms.identities(call.room):
            await self._stored(lambda: self.end_call(call.call_id, actor=identity, reason="caller hung up"))

    async def _target_left_unless_back(self, t: Transfer, identity: str) -> None:
        await asyncio.sleep(self.settings.target_grace_s)
        self._target_lost.pop(t.transfer_id, None)
        if identity not in await self.rooms.identities(t.consult_room):
            # Not back: a queue or hunt list offers the transfer to the next agent, else back with A.
            await self._offer_failed(
                t.transfer_id,
                S.target_left,
                target=identity,
                actor=identity,
                reason="target left the consult",
                quietly=True,
            )

    async def on_media_report(self, report: MediaReport) -> None:
        if isinstance(report, WorkerHeartbeat | WorkerGone):  # worker liveness (control.media_control)
            if isinstance(report, WorkerHeartbeat):
                lost = self.media.on_heartbeat(report)
            else:
                lost = self.media.on_worker_gone(report.worker_id)
            for job in lost:
                self._background.spawn(self._job_lost(job))
            return
        try:
            self.store.get_call(report.call_id)
        except NotFound:
            return  # not ours
        if isinstance(report, SegmentReport):
            await self.transcripts.add(report)
        elif isinstance(report, TranscriptionStatus):
            await self.transcripts.on_status(report)
        elif isinstance(report, QAReport):
            await self.consult_qa.on_report(report)
        elif isinstance(report, FunctionsReport):
            self.media_functions.update(
                (st.function, st) for st in merge_status(self.media_functions.values(), report.functions)
            )
        elif isinstance(report, MediaEvent):
            self.media.on_event(report)
            if report.event == "joined" and report.transfer_id and report.detail:
                self._check_briefing_target(report.transfer_id, report.detail)
            if report.event in ("hold_started", "brief_failed"):
                log.info("media %s: %s %s", report.call_id, report.event, report.detail)

    def _check_briefing_target(self, transfer_id: str, target: str) -> None:
        """A consult job briefs one agent. One dispatched for an earlier offer of a queue or hunt list
        (it joined late, after the offer moved on) is taken out; its leaving dispatches the right one."""
        try:
            t = self.store.get_transfer(transfer_id)
        except NotFound:
            return
        if t.state is S.consulting and t.target_kind is TargetKind.agent and target != t.target:
            log.info(
                "consult job of %s briefs %s, but the offer is %s's now: replacing it", transfer_id, target, t.target
            )
            self.media.replacing(briefing_identity(transfer_id))
            self._background.spawn(
                self._safe(self.rooms.remove_participant(t.consult_room, briefing_identity(transfer_id)))
            )

    async def _watch_workers(self) -> None:
        """Workers that stopped beating (killed, frozen, cut off): their jobs are lost."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(HEARTBEAT_S)
            lag = loop.time() - started - HEARTBEAT_S
            for job in self.media.silent_workers(lag_s=lag if lag > HEARTBEAT_S / 2 else 0.0):
                self._background.spawn(self._job_lost(job))

    async def _job_lost(self, job: JobRef) -> None:
        """A job whose process is gone: its participant is a ghost until LiveKit's 15 s ping
        timeout. Removed now, so the `participant_left` webhook re-dispatches the job at once."""
        call, transfer = self._room_owner(job.room)
        live = (call is not None and call.status is not CallStatus.ended) or (
            transfer is not None and transfer.state is S.consulting
        )
        if live:
            log.warning("media job %s in %s lost with its worker: removing its participant", job.identity, job.room)
            await self._safe(self.rooms.remove_participant(job.room, job.identity))

    def _room_owner(self, room: str) -> tuple[Call | None, Transfer | None]:
        """The call whose room this is, or else the transfer whose consult room it is (neither: not ours)."""
        call = self.store.call_by_room(room)
        return call, (self._transfer_by_consult_room(room) if call is None else None)

    def _transfer_by_consult_room(self, room: str) -> Transfer | None:
        if not room.startswith("consult-"):
            return None
        try:
            return self.store.get_transfer(room.removeprefix("consult-"))
        except NotFound:
            return None

    async def _ensure_call_job(self, call: Call) -> None:
        async def redispatch() -> bool:
            if self.store.get_call(call.call_id).status is CallStatus.ended:
                return False
            await self._retry(lambda: self.media.redispatch_call_job(call))
            return True

        await self.media.job_left(call.room, media_identity(call.call_id), redispatch)

    async def _ensure_consult_job(self, t: Transfer) -> None:
        async def redispatch() -> bool:
            current = self.store.get_transfer(t.transfer_id)
            if current.state is not S.consulting:
                return False
            call = self.store.get_call(t.call_id)
            await self._retry(lambda: self.media.redispatch_consult_job(current, call, self.summary_source(call)))
            return True

        await self.media.job_left(t.consult_room, briefing_identity(t.transfer_id), redispatch)

    # --- internals: the hand-off ------------------------------------------------------------
    async def _wait_for_microphone(self, room: str, identity: str, timeout: float) -> bool:
        """True once `identity` has published its microphone in `room`: the webhook says so at
        once; RoomService is asked too (every second), so a lost webhook costs a second, not a call."""
        ev = self._arrivals.setdefault((room, identity), asyncio.Event())
        deadline = time.monotonic() + timeout
        try:
            while True:
                if ev.is_set() or await self._has_microphone(room, identity):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(ev.wait(), min(1.0, left))
                except TimeoutError:
                    pass
        finally:
            self._arrivals.pop((room, identity), None)

    async def _has_microphone(self, room: str, identity: str) -> bool:
        try:
            participants = await self.rooms.list_participants(room)
        except ServiceError:
            return False
        return any(
            p.identity == identity
            and any(t.type == api.TrackType.AUDIO and t.source == api.TrackSource.MICROPHONE for t in p.tracks)
            for p in participants
        )

    async def _finish_handoff(self, transfer_id: str) -> None:
        t = self.store.get_transfer(transfer_id)
        identity = t.target if t.target_kind is TargetKind.agent else self.phone and self.phone.room_identity(t)
        if identity is None:
            reason = "a phone leg can only be bridged into the call with LIVEKIT_SIP_URI configured"
            await self._finish_quietly(transfer_id, S.failed, actor="system", reason=reason)
            return
        if not await self._wait_for_microphone(t.call_room, identity, self.settings.join_timeout_s):
            reason = "target did not reach the caller's room"
            await self._finish_quietly(transfer_id, S.failed, actor="system", reason=reason)
            return
        done = await self._stored(lambda: self._hand_over(transfer_id))
        if done is not None:
            t, call = done
            await self._notify(t)
            await self._notify_call(call)

    async def _hand_over(self, transfer_id: str) -> tuple[Transfer, Call] | None:
        """B is in the caller's room: the state first (one transaction), then the media follows it."""
        t = self.store.get_transfer(transfer_id)
        async with self._lock(t.call_id):
            t = self.store.get_transfer(transfer_id)
            if t.state is not S.completing:
                return None  # the caller hung up meanwhile; that path already cleaned up
            call_fields = {"agent_identity": t.target, "status": CallStatus.active}
            t = self.store.transition(transfer_id, S.completed, actor="system", call=call_fields)
            call = self.store.get_call(t.call_id)
            # Order matters for the caller: B is already audible, so stopping the hold audio
            # leaves no silence; A (muted since initiate) goes last.
            await self._safe(self._retry(lambda: self.media.set_hold(call, False)))
            await self._safe(self._retry(lambda: self.rooms.remove_participant(t.call_room, t.from_agent)))
            await self._safe(self._retry(lambda: self.rooms.delete_room(t.consult_room)))
        return t, call

    # --- internals: queues and hunt lists, the three-way introduction ------------------------------
    async def _offer_failed(
        self,
        transfer_id: str,
        state: TransferState,
        *,
        target: str,
        actor: str,
        reason: str = "",
        quietly: bool = False,
    ) -> Transfer | None:
        """`target` did not take the transfer (declined, no answer, left the consult). A queue or hunt
        list offers it to the next agent; otherwise, or with nobody left, it ends in `state` (the
        caller back with A). None when the transfer had already moved on from `target` (a race)."""
        t = self.store.get_transfer(transfer_id)
        if t.target != target:
            return None  # about an earlier offer: the transfer was offered to someone else since
        moved = None
        if t.route and t.state is S.consulting:
            async with self._lock(t.call_id):
                t = self.store.get_transfer(transfer_id)
                nxt = next_target(t, self.presence) if t.state is S.consulting else None
                if nxt is not None:
                    cause = {S.declined: "offer_declined", S.target_left: "offer_left"}.get(state, "offer_timed_out")
                    events = [
                        {"event": cause, "agent": target, **({"reason": reason} if reason else {})},
                        {"event": "offered", "from": target, "to": nxt},
                    ]
                    moved = self.store.retarget(transfer_id, expected=target, target=nxt, actor=actor, events=events)
                if moved is not None:
                    # The next agent gets a consult job of its own (only the target may hear the brief): the
                    # old job is taken out, and the same check that replaces a lost job dispatches the new one.
                    self._cancel_timers(transfer_id)
                    self._arm_timeouts(transfer_id, ring=True, routed=True)
                    await self._safe(self.rooms.remove_participant(t.consult_room, target))
                    self.media.replacing(briefing_identity(transfer_id))
                    await self._safe(self.rooms.remove_participant(t.consult_room, briefing_identity(transfer_id)))
            if moved is not None:
                log.info("transfer %s: %s (%s); offered to %s", transfer_id, cause, target, moved.target)
                self._background.spawn(self._ensure_consult_job(moved))
                summary = self.summary_source(self.store.get_call(moved.call_id))
                await self._notify(moved, summary=summary)
                withdrawn = OfferMoved(payload=OfferMovedPayload(transfer_id=transfer_id, to=nxt))
                self.rooms.post(LOBBY, withdrawn, [target])
                return moved
            if self.store.get_transfer(transfer_id).target != target:
                return None
        if quietly:
            await self._finish_quietly(transfer_id, state, actor=actor, reason=reason)
            return None
        return await self._finish(transfer_id, state, actor=actor, reason=reason)

    async def _finish_introduction(self, transfer_id: str) -> None:
        """B reaches the caller's room (bounded), then: hold off (B is audible already), A hears and
        talks again, the consult room is closed. A leaves by `leave`, or after INTRO_LIMIT_S."""
        t = self.store.get_transfer(transfer_id)
        if not await self._wait_for_microphone(t.call_room, t.target, self.settings.join_timeout_s):
            reason = "target did not reach the caller's room"
            await self._finish_quietly(transfer_id, S.failed, actor="system", reason=reason)
            return
        async with self._lock(t.call_id):
            t = self.store.get_transfer(transfer_id)
            if t.state is not S.introducing:
                return  # cancelled, or the caller hung up meanwhile: that path cleaned up
            call = self.store.get_call(t.call_id)
            await self._safe(self._retry(lambda: self.media.set_hold(call, False)))
            await self._safe(self._restore_agent(t))
            await self._safe(self._retry(lambda: self.rooms.delete_room(t.consult_room)))
            call = self.store.update_call(t.call_id, status=CallStatus.active)
            if not _introduced(t):
                t = self.store.note(transfer_id, actor="system", detail={"event": "introduced"})
        self._timers[transfer_id] = {"intro": asyncio.ensure_future(self._intro_limit(transfer_id))}
        await self._notify(t)
        await self._notify_call(call)

    async def _intro_limit(self, transfer_id: str) -> None:
        await asyncio.sleep(self.settings.intro_limit_s)
        with contextlib.suppress(Conflict):  # IllegalTransition too: it ended some other way
            await self._end_introduction(transfer_id, actor="timer", reason="introduction time limit")

    async def _end_introduction(self, transfer_id: str, *, actor: str, reason: str = "") -> Transfer:
        """A is out, B stays with the caller: completed. Only once B is with the caller."""
        t = self.store.get_transfer(transfer_id)
        check_transition(t.state, S.completed)
        if not _introduced(t):
            raise Conflict(f"{t.target} has not joined the caller yet: wait a moment, or cancel the transfer")
        async with self._lock(t.call_id):
            t = self.store.transition(transfer_id, S.completed, actor=actor, reason=reason)
            call = self.store.update_call(t.call_id, agent_identity=t.target, status=CallStatus.active)
            self._cancel_timers(transfer_id)
            await self._safe(self._retry(lambda: self.rooms.remove_participant(t.call_room, t.from_agent)))
        await self._notify(t)
        await self._notify_call(call)
        return t

    def _left_introduction(self, call: Call, identity: str) -> None:
        """Someone left the caller's room during an introduction: B (the caller stays with A), or A
        once B is there (A's way out: B stays with the caller)."""
        for t in self.store.list_transfers(call_id=call.call_id, open_only=True):
            if t.state is not S.introducing:
                continue
            if identity == t.target:
                reason = "target left the caller"
                finish = self._finish_quietly(t.transfer_id, S.target_left, actor=identity, reason=reason)
                self._background.spawn(finish)
            elif identity == t.from_agent and _introduced(t):
                self._background.spawn(self._end_quietly(t.transfer_id, actor=identity))

    async def _end_quietly(self, transfer_id: str, *, actor: str) -> None:
        with contextlib.suppress(Conflict):
            await self._end_introduction(transfer_id, actor=actor, reason="left the call")

    async def _finish(self, transfer_id: str, state: TransferState, *, actor: str, reason: str = "") -> Transfer:
        """End a transfer in `state` and undo what it set up. Illegal → raises, changes nothing."""
        call_id = self.store.get_transfer(transfer_id).call_id
        async with self._lock(call_id):
            t, call = await self._finish_locked(transfer_id, state, actor=actor, reason=reason)
        await self._notify_call(call)
        return t

    async def _finish_locked(
        self, transfer_id: str, state: TransferState, *, actor: str, reason: str = "", end_call: bool = False
    ) -> tuple[Transfer, Call]:
        """`_finish` with the call's lock held; `end_call`: the call ends with it (whatever `state`)."""
        before = self.store.get_transfer(transfer_id)
        call = self.store.get_call(before.call_id)
        # The call's record follows the transfer in the same transaction, so nobody reads a stale pair.
        if state is S.caller_left or end_call:
            call_fields: dict[str, object] = {"status": CallStatus.ended}
        elif state in ROLLBACK_STATES and call.status is not CallStatus.ended:
            call_fields = {"status": CallStatus.active, "agent_identity": before.from_agent}
        else:
            call_fields = {}
        t = self.store.transition(transfer_id, state, actor=actor, reason=reason, call=call_fields)
        call = self.store.get_call(t.call_id)
        self._cancel_timers(transfer_id)
        await self._notify(t)  # before the rollback deletes the consult room A and B are in
        # end_call deletes the call room itself, once the caller has been told the call ended.
        await self._rollback(t, call, delete_call_room=not end_call)
        return t, call

    async def _rollback(self, t: Transfer, call: Call, *, delete_call_room: bool = True) -> None:
        if t.target_kind is TargetKind.phone and self.phone is not None and t.state is not S.completed:
            await self._safe(self.phone.stop(t))
        try:
            await self._restore_call(t, call, delete_call_room=delete_call_room)
        finally:
            # Last: the caller's side first. LiveKit drops data still on its way to a room it deletes, so
            # the transfer's last notice to A and B in the consult goes out first (seen missed on a CI
            # run); as with an ended call's room (ENDED_NOTICE_S).
            await self._safe(self.rooms.flush(t.consult_room))
            await asyncio.sleep(ENDED_NOTICE_S)
            await self._safe(self.rooms.delete_room(t.consult_room))  # the consult job leaves with it

    async def _restore_call(self, t: Transfer, call: Call, *, delete_call_room: bool) -> None:
        """The call after a transfer that did not complete: gone with its room, or back with A."""
        if call.status is CallStatus.ended:
            if delete_call_room:
                await self._safe(self.rooms.delete_room(t.call_room))
        elif t.state in ROLLBACK_STATES:
            held = any(e.to_state is S.consulting for e in t.events)  # the caller was on hold: say they're back
            speech = back_speech(self.settings, t, self.presence.name_of(t.from_agent)) if held else None
            await self._safe(self.media.set_hold(call, False, speech=speech))
            # B may have got into the caller's room before the hand-off failed (or during an introduction).
            if any(e.to_state in (S.completing, S.introducing) for e in t.events):
                await self._safe(self.rooms.remove_participant(t.call_room, t.target))
            await self._safe(self._restore_agent(t))

    async def _restore_agent(self, t: Transfer) -> None:
        try:
            await self.rooms.set_permissions(t.call_room, t.from_agent, publish=True, subscribe=True)
        except NotFound:
            pass  # A left the call room meanwhile; a fresh token has full permissions anyway

    # --- internals: timers, events ---------------------------------------------------------------
    def _target_joined(self, transfer_id: str) -> None:
        # B is in the consult: the ring timer is done, the accept timer keeps running.
        if ring := self._timers.get(transfer_id, {}).pop("ring", None):
            ring.cancel()

    def _arm_timeouts(self, transfer_id: str, *, ring: bool, routed: bool = False) -> None:
        """The offer's timers. A queue or hunt-list offer rings OFFER_TIMEOUT_S before it moves on."""
        accept_s = self.settings.accept_timeout_s
        ring_s = self.settings.offer_timeout_s if routed else self.settings.ring_timeout_s
        target = self.store.get_transfer(transfer_id).target
        timers = {"accept": self._timer(transfer_id, target, accept_s, "target did not accept in time")}
        if ring:
            timers["ring"] = self._timer(transfer_id, target, ring_s, "target did not join the consult")
        self._timers[transfer_id] = timers

    def _timer(self, transfer_id: str, target: str, seconds: float, reason: str) -> asyncio.Task:
        async def fire() -> None:
            await asyncio.sleep(seconds)
            await self._offer_failed(
                transfer_id, S.timed_out, target=target, actor="timer", reason=reason, quietly=True
            )

        return asyncio.ensure_future(fire())

    def _cancel_timers(self, transfer_id: str) -> None:
        current = asyncio.current_task()
        for task in [*self._timers.pop(transfer_id, {}).values(), self._target_lost.pop(transfer_id, None)]:
            if task is not None and task is not current:
                task.cancel()

    async def _finish_quietly(self, transfer_id: str, state: TransferState, *, actor: str, reason: str) -> None:
        """For events (timers, departures) that may lose a race with a user action, and that nobody
        waits for: a database that cannot be written delays them, it does not lose them."""
        try:
            await self._stored(lambda: self._finish(transfer_id, state, actor=actor, reason=reason))
        except IllegalTransition:
            pass

    async def _stored(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a state change nobody is waiting for, again every `storage_every_s` while the database
        cannot be written (read-only, disk full), for up to `storage_for_s`: applied once it can."""
        deadline = time.monotonic() + self.retry.storage_for_s
        waited = False
        while True:
            try:
                result = await op()
            except StorageUnavailable as e:
                if time.monotonic() > deadline:
                    log.error("a state change was given up after %.0f s: %s", self.retry.storage_for_s, e)
                    raise
                if not waited:
                    log.warning("a state change waits for the database: %s", e)
                    waited = True
                await asyncio.sleep(self.retry.storage_every_s)
                continue
            if waited:
                log.info("the database took the delayed state change")
            return result

    async def _notify(self, t: Transfer, *, summary: CallSummary | None = None, join_room: str | None = None) -> None:
        payload = TransferPayload(
            transfer=TransferInfo.model_validate(t.model_dump(exclude={"events"})),
            event=t.events[-1] if t.events else None,
            summary=summary,
            join_room=join_room,
        )
        msg = TransferChanged.of(t.state, payload)
        agents = [t.from_agent] + ([t.target] if t.target_kind is TargetKind.agent else [])
        # In process (presence, the UI) first; the LiveKit sends are queued (Rooms.post), never waited for.
        self.bus.publish(msg)
        self.rooms.post(LOBBY, msg, agents)
        if t.state in (S.consulting, S.completing, S.introducing, *ROLLBACK_STATES, S.caller_left):
            self.rooms.post(t.consult_room, msg)  # delivered before the rollback deletes the room

    async def _notify_call(self, call: Call, *, now: bool = False) -> bool:
        """What the caller's side may know: status and who they talk to, never the summary. Queued
        (`Rooms.post`), or with `now` sent before this returns: True if it was."""
        msg = CallStatusChanged(
            payload=CallStatusPayload(call_id=call.call_id, status=call.status, agent=call.agent_identity)
        )
        self.bus.publish(msg)
        if not now:
            self.rooms.post(call.room, msg)
            return True
        # Sent before the caller returns (e.g. "ended" before the room goes): what was posted to the
        # room before it goes first, so the order holds.
        await self.rooms.flush(call.room)
        return await self.rooms.send(call.room, msg)

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    async def _retry(self, op: Callable[[], Awaitable]):
        """The one place that retries: LiveKit calls that failed retryably, with backoff."""
        for attempt in range(self.retry.attempts):
            try:
                return await op()
            except ServiceError as e:
                if not e.retryable or attempt == self.retry.attempts - 1:
                    raise
                await asyncio.sleep(self.retry.delay(attempt))

    async def _safe(self, coro: Awaitable) -> None:
        """Clean-up steps: a failure is logged, and the rest of the clean-up still runs."""
        try:
            await coro
        except (ServiceError, OSError) as e:
            log.warning("clean-up step failed: %s", e)


def _check_agent(identity: str) -> None:
    if not is_agent_identity(identity):
        raise InvalidInput(f"'{identity[:64]}' is not a valid agent identity")


def _introduced(t: Transfer) -> bool:
    """B reached the caller's room in this introduction (its event log says so)."""
    return any(e.detail.get("event") == "introduced" for e in t.events)


def _last_event(t: Transfer) -> dict | None:
    return t.events[-1].model_dump(mode="json") if t.events else None
