"""Media follows state, always: the control plane's repair loop.

Every transition's side effects in LiveKit (hold audio, A's permissions, who is in which room, which
rooms exist) are made by the orchestrator under the call's lock, and webhooks correct most surprises
at once (a join the state does not allow is removed). What can still leave the media behind the
state: a RoomService call that failed after the state was committed, a webhook that never came (or
came late and acted on a state that had moved on), a server that lost its rooms. So every
`interval_s` the reconciler compares what LiveKit has (RoomService: rooms with their metadata,
participants with their permissions) with what the store says, and repairs the media:

- an open call's room metadata (`CallRoomState`) says hold exactly while the call is on hold, and
  its call job is there (missing: dispatched again, see `MediaControl.job_left`);
- the call's agent may neither speak nor listen while the call is on hold, and may do both otherwise;
- nobody is in a call or consult room whom the state does not allow there (`_may_be_in`, the same
  rule as the `participant_joined` webhook's);
- rooms of ended calls and finished transfers are deleted;
- an open call whose room is gone (the LiveKit server lost it) is ended, and an agent consult whose
  room is gone ends `failed`: agents and callers are told, nothing stays half-open.

The state is never changed to fit the media (except ending what can no longer exist). Each call is
checked under its lock, and a call whose lock is held (an action under way) is left to the next pass,
so a repair never lands in the middle of a transition. An unreachable LiveKit is logged once (and
once when it is back); the passes go on. `repairs` keeps what was repaired, newest last.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livekit import api

from functions.errors import ServiceError
from functions.media_protocol import CallRoomState, media_identity
from functions.models import TERMINAL_STATES, Call, CallStatus, TargetKind, Transfer, TransferState

if TYPE_CHECKING:
    from control.transfer import TransferOrchestrator

log = logging.getLogger(__name__)
S = TransferState
PASS_TIMEOUT_S = 10.0  # one pass against a LiveKit that stopped answering is abandoned after this
CLOSING_S = 1.0  # a deleted room stays listed while its participants are disconnected; not a leftover yet


@dataclass(frozen=True)
class Repair:
    at: float  # time.monotonic()
    room: str
    what: str


def hold_of(metadata: str) -> bool | None:
    """The hold flag a room's metadata asks for (None: unreadable, which is a mismatch too)."""
    try:
        return CallRoomState.model_validate_json(metadata or "{}").hold
    except ValueError:
        return None


class Reconciler:
    """The orchestrator's own repair loop: it uses the orchestrator's per-call locks and its rule of
    who may be where, so there is one lock per call and one rule (control.transfer)."""

    def __init__(self, orch: TransferOrchestrator, *, interval_s: float) -> None:
        self.orch = orch
        self.interval_s = interval_s
        self.repairs: deque[Repair] = deque(maxlen=500)
        self.passes = 0
        self.livekit_down_since: float | None = None
        self._ending: set[str] = set()  # call_ids / transfer_ids being ended in the background
        self._this_pass: list[Repair] = []

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await asyncio.wait_for(self.reconcile(), PASS_TIMEOUT_S)
            except TimeoutError:
                log.warning("a reconcile pass took longer than %.0f s and was abandoned", PASS_TIMEOUT_S)
            except Exception:  # a bug must not end the loop that keeps media and state in agreement
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise  # stopping: whatever failed on the way out (a closed client) is not a bug
                log.exception("a reconcile pass failed")
            await asyncio.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    async def reconcile(self) -> list[Repair]:
        """One pass over every open call and transfer and every room LiveKit has; returns its repairs."""
        o = self.orch
        self._this_pass = []
        try:
            live = {r.name: r for r in await o.rooms.list_rooms()}
        except ServiceError as e:
            if self.livekit_down_since is None:
                self.livekit_down_since = time.monotonic()
                log.error("the LiveKit server does not answer (%s): calls cannot be checked until it does", e)
            return []
        if self.livekit_down_since is not None:
            log.warning("the LiveKit server answers again after %.1f s", time.monotonic() - self.livekit_down_since)
            self.livekit_down_since = None
        self.passes += 1
        checks: list[Callable[[], Awaitable[None]]] = [
            *(functools.partial(self._call, call, live.get(call.room)) for call in o.store.list_calls()),
            *(
                functools.partial(self._consult, t, live.get(t.consult_room))
                for t in o.store.list_transfers(open_only=True)
            ),
            *(functools.partial(self._closed, name, room) for name, room in live.items()),
        ]
        for check in checks:
            try:
                await check()
            except ServiceError as e:  # one room's RoomService call failed: the others are still checked
                log.warning("reconciler: a check failed (next pass in %.1f s): %s", self.interval_s, e)
        return self._this_pass

    # --- one call ---------------------------------------------------------------------------------
    async def _call(self, call: Call, room: api.Room | None) -> None:
        o = self.orch
        lock = o._lock(call.call_id)
        if lock.locked() or call.call_id in self._ending:
            return  # an action is under way: what it leaves is checked next pass
        async with lock:
            call = o.store.get_call(call.call_id)
            if call.status is CallStatus.ended:
                return
            if room is None and not await o.rooms.room_exists(call.room):
                gone = True
            else:
                gone = False
                await self._hold(call, room)
                await self._participants(call)
        if gone:
            self._end_call(call, "the call's room is gone from the LiveKit server")

    async def _hold(self, call: Call, room: api.Room | None) -> None:
        want = call.status is CallStatus.on_hold
        if room is not None and hold_of(room.metadata) == want:
            return
        # The pass's snapshot is older than the lock: ask again before repairing.
        fresh = await self.orch.rooms.list_rooms([call.room])
        if fresh and hold_of(fresh[0].metadata) != want:
            await self.orch.media.set_hold(call, want)
            self._repaired(call.room, f"hold audio {'on' if want else 'off'} (call is {call.status.value})")

    async def _participants(self, call: Call) -> None:
        o = self.orch
        participants = await o.rooms.list_participants(call.room)
        identities = {p.identity for p in participants}
        for p in participants:
            if not o._may_be_in(call.room, p.identity, call, None):
                await o.rooms.remove_participant(call.room, p.identity)
                self._repaired(call.room, f"removed {p.identity} (not allowed in while {call.status.value})")
            elif p.identity == call.agent_identity:
                await self._agent_permissions(call, p)
        if media_identity(call.call_id) not in identities:
            # Missing (its worker died, a dispatch was dropped): dispatched again once its grace is over.
            o._background.spawn(o._ensure_call_job(call))

    async def _agent_permissions(self, call: Call, p: api.ParticipantInfo) -> None:
        on_hold = call.status is CallStatus.on_hold
        perm = p.permission
        if on_hold and (perm.can_publish or perm.can_subscribe):
            await self.orch.rooms.set_permissions(call.room, p.identity, publish=False, subscribe=False)
            self._repaired(call.room, f"{p.identity} muted both ways (the call is on hold)")
        elif not on_hold and not (perm.can_publish and perm.can_subscribe):
            await self.orch.rooms.set_permissions(call.room, p.identity, publish=True, subscribe=True)
            self._repaired(call.room, f"{p.identity} may speak and listen again (the call is {call.status.value})")

    # --- one consult ------------------------------------------------------------------------------
    async def _consult(self, t: Transfer, room: api.Room | None) -> None:
        o = self.orch
        lock = o._lock(t.call_id)
        if lock.locked() or t.transfer_id in self._ending:
            return
        async with lock:
            t = o.store.get_transfer(t.transfer_id)
            if t.state not in (S.consulting, S.completing):
                return  # idle: its initiate holds the lock until it is consulting or failed
            if room is None and not await o.rooms.room_exists(t.consult_room):
                # A phone consult may be empty (nobody need join it), and LiveKit closes an empty room.
                gone = t.state is S.consulting and t.target_kind is TargetKind.agent
            else:
                gone = False
                for p in await o.rooms.list_participants(t.consult_room):
                    if not o._may_be_in(t.consult_room, p.identity, None, t):
                        await o.rooms.remove_participant(t.consult_room, p.identity)
                        self._repaired(t.consult_room, f"removed {p.identity} (not part of this consult)")
        if gone:
            self._ending.add(t.transfer_id)
            reason = "the consult room is gone from the LiveKit server"
            self._repaired(t.consult_room, f"transfer {t.transfer_id} ends failed ({reason})")

            async def fail() -> None:
                try:
                    await o._finish_quietly(t.transfer_id, S.failed, actor="system", reason=reason)
                finally:
                    self._ending.discard(t.transfer_id)

            o._background.spawn(fail())

    # --- rooms the state has closed -----------------------------------------------------------------
    async def _closed(self, name: str, room: api.Room) -> None:
        o = self.orch
        call, t = o._room_owner(name)
        if call is not None and call.status is CallStatus.ended:
            ended_at = call.updated_at
        elif t is not None and t.state in TERMINAL_STATES:
            ended_at = t.updated_at
        else:
            return  # not ours, or still needed
        created_at = room.creation_time_ms / 1000 or float(room.creation_time)
        if created_at < ended_at and time.time() - ended_at < CLOSING_S:
            return  # deleted by the action that ended it; LiveKit lists a room until its participants are out
        lock = o._lock(call.call_id if call is not None else t.call_id)  # type: ignore[union-attr]
        if lock.locked():
            return  # the action that ended it is still cleaning up
        async with lock:
            # The pass's snapshot is older than the lock: the clean-up may have deleted it meanwhile.
            if await o.rooms.room_exists(name):
                await o.rooms.delete_room(name)
                self._repaired(name, "deleted (its call or transfer is over)")

    # --- helpers ------------------------------------------------------------------------------------
    def _end_call(self, call: Call, reason: str) -> None:
        o = self.orch
        self._ending.add(call.call_id)
        self._repaired(call.room, f"call {call.call_id} ends ({reason})")

        async def end() -> None:
            try:
                await o._stored(lambda: o.end_call(call.call_id, actor="system", reason=reason, outcome=S.failed))
            finally:
                self._ending.discard(call.call_id)

        o._background.spawn(end())

    def _repaired(self, room: str, what: str) -> None:
        log.warning("reconciler: %s: %s", room, what)
        repair = Repair(time.monotonic(), room, what)
        self.repairs.append(repair)
        self._this_pass.append(repair)
