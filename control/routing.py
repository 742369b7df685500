"""Where a transfer or a waiting call goes: agents, queues (skills), hunt lists, ringing offers.

Transfers (`Destination`, `first_target`, `next_target`):
- a destination is one agent, a phone number, a queue ("billing": the agents with that skill in
  AGENT_SKILLS), or a hunt list (ordered agents and `queue:<name>` entries);
- `first_target` picks who is offered first, or refuses, changing nothing: an unknown agent or
  queue is InvalidInput (422); an agent who is offline, away or busy, and a queue or hunt list
  with nobody available, are Conflict (409), so A hears at once and the caller stays with A;
- a queue offers the agent idle longest; `next_target` the next one after a decline, no answer or
  the target leaving the consult, skipping everyone offered before (read from the event log).

Waiting calls (`CallQueue`): a caller no agent has answered yet rings one agent at a time (the
caller's pick, else the agent idle longest) for OFFER_TIMEOUT_S, then the next available agent; with
nobody left it waits in the queue, where every available agent sees it, and rings the next agent
who becomes available. The caller sees its place in the queue and an estimated wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from control.presence import LOBBY, Presence
from control.rooms import Rooms
from functions.background import Background
from functions.errors import Conflict, InvalidInput
from functions.events import (
    CallIncoming,
    CallIncomingPayload,
    CallQueued,
    CallQueuePayload,
    CallStatusChanged,
    CallWithdrawn,
    CallWithdrawnPayload,
    Notification,
)
from functions.models import AgentState, Call, CallStatus, Transfer, TransferState, is_agent_identity
from functions.settings import QUEUE_RE, Settings

log = logging.getLogger(__name__)
MAX_HUNT = 10  # entries in a hunt list
QUEUE_WAIT_PRIOR_S = 60.0  # the estimated wait per caller ahead, until calls have been answered here
WAITS_KEPT = 20  # the estimate is the mean wait of this many recently answered calls


# --- transfers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """What A asked for. `route`: the entries of a queue or hunt list (empty for one agent or number)."""

    kind: Literal["agent", "phone", "queue", "hunt"]
    target: str
    route: tuple[str, ...] = ()


def destination(target: str, kind: str | None = None, targets: list[str] | None = None) -> Destination:
    """Parse a transfer request. Kind `None`: a number if `target` starts with '+', a queue if it
    starts with 'queue:', else an agent."""
    target = (target or "").strip()
    if kind is None:
        kind = "hunt" if targets else "phone" if target.startswith("+") else "agent"
        kind = "queue" if target.startswith("queue:") else kind
    if kind == "queue":
        name = _queue_name(target.removeprefix("queue:"))
        return Destination("queue", name, (f"queue:{name}",))
    if kind == "hunt":
        entries = [e.strip() for e in (targets or []) if e.strip()]
        if not entries or len(entries) > MAX_HUNT:
            raise InvalidInput(f"a hunt list has 1 to {MAX_HUNT} targets (agent ids or queue:<name>)")
        route = []
        for e in entries:
            if e.startswith("queue:"):
                route.append(f"queue:{_queue_name(e.removeprefix('queue:'))}")
            elif is_agent_identity(e):
                route.append(e)
            else:
                raise InvalidInput(f"'{e[:64]}' in the hunt list is neither an agent id nor queue:<name>")
        if len(set(route)) != len(route):
            raise InvalidInput("the hunt list names a target twice")
        return Destination("hunt", "", tuple(route))
    if kind not in ("agent", "phone"):
        raise InvalidInput(f"unknown target kind {kind!r}: agent, phone, queue or hunt")
    if not target:
        raise InvalidInput("the transfer needs a target")
    return Destination(kind, target)  # type: ignore[arg-type]


def _queue_name(name: str) -> str:
    name = name.strip().lower()
    if not re.fullmatch(QUEUE_RE, name):
        raise InvalidInput(f"'{name[:32]}' is not a queue name (1-32 of a-z 0-9 _ -)")
    return name


def _check_queue(presence: Presence, name: str) -> None:
    queues = presence.queues()
    if name not in queues:
        known = ", ".join(queues) or "none (set AGENT_SKILLS)"
        raise InvalidInput(f"there is no queue '{name}'; the queues are: {known}")


async def first_target(dest: Destination, presence: Presence, from_agent: str) -> str:
    """The agent a queue or hunt-list transfer (or a transfer to one agent) is offered first."""
    if dest.kind == "agent":
        if dest.target == from_agent:
            raise InvalidInput("cannot transfer a call to yourself")
        await presence.check_target(dest.target)
        return dest.target
    for entry in dest.route:  # an unknown agent or queue anywhere in the list is the request's mistake
        if entry.startswith("queue:"):
            _check_queue(presence, entry.removeprefix("queue:"))
        elif entry == from_agent:
            raise InvalidInput("cannot transfer a call to yourself")
        elif not presence.known(entry):
            raise InvalidInput(f"there is no agent '{entry}'")
    found = _candidate(dest.route, presence, tried={from_agent})
    if found is None:
        who = f"in {dest.target}" if dest.kind == "queue" else "on the hunt list"
        raise Conflict(f"nobody {who} is available: the caller stays with you")
    return found


def offered(t: Transfer) -> set[str]:
    """Everyone this transfer has been offered to, from its event log (and who started it)."""
    out = {t.from_agent, t.target}
    for e in t.events:
        if e.to_state is TransferState.consulting and e.from_state is TransferState.idle:
            out.add(str(e.detail.get("target", "")))
        elif e.detail.get("event") == "offered":
            out.add(str(e.detail.get("to", "")))
    return out


def next_target(t: Transfer, presence: Presence) -> str | None:
    """Who a queue or hunt-list transfer is offered next (None: nobody is left)."""
    return _candidate(t.route, presence, tried=offered(t)) if t.route else None


def _candidate(route: tuple[str, ...] | list[str], presence: Presence, *, tried: set[str]) -> str | None:
    for entry in route:
        if entry.startswith("queue:"):
            free = presence.available(queue=entry.removeprefix("queue:"), exclude=tried)
            if free:
                return free[0]
        elif entry not in tried and entry in presence.available(exclude=tried):
            return entry
    return None


# --- waiting calls ------------------------------------------------------------------------------


@dataclass
class WaitingCall:
    call_id: str
    room: str
    caller_name: str
    since: float = field(default_factory=time.time)
    agent: str | None = None  # the agent it rings now; None: waiting in the queue
    missed: set[str] = field(default_factory=set)  # agents it rang who did not answer


Assign = Callable[[str, str], Awaitable[Call]]


class CallQueue:
    """Waiting calls, in the order they came, each ringing at most one agent at a time."""

    def __init__(
        self,
        settings: Settings,
        presence: Presence,
        rooms: Rooms,
        assign: Assign,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: wall-clock seconds (default: presence's, so idle times and waits agree)."""
        self.settings = settings
        self.presence = presence
        self.clock = clock or presence.clock
        self.rooms = rooms
        self.assign = assign
        self._calls: dict[str, WaitingCall] = {}
        self._timers: dict[str, asyncio.Task] = {}
        self._waits: deque[float] = deque(maxlen=WAITS_KEPT)  # seconds callers waited before an answer
        self._told: dict[str, dict] = {}  # call_id → what its caller's page was last told
        self._lock = asyncio.Lock()
        self._background = Background()

    async def aclose(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._background.cancel()

    # --- calls come and go ------------------------------------------------------------------------
    def check_pick(self, pick: str | None) -> None:
        """The caller's choice of agent must be available now (before anything is created)."""
        if pick and pick not in self.presence.available():
            raise InvalidInput(f"{self.presence.name_of(pick)} is not available any more; pick another agent")

    async def add(self, call: Call, pick: str | None = None) -> WaitingCall:
        """A new waiting call: it rings the caller's pick, else the agent idle longest, else waits."""
        async with self._lock:
            w = WaitingCall(call.call_id, call.room, call.caller_name, since=call.created_at)
            self._calls[call.call_id] = w
            self._route(w, prefer=pick)
        return w

    async def accept(self, call_id: str, agent: str) -> Call:
        """An agent answers the call ringing it, or one waiting in the queue (not while on another call:
        picking a call is the agent's own choice, so away or API-only agents may)."""
        async with self._lock:
            w = self._calls.get(call_id)
            if w is None:
                raise InvalidInput("this call is no longer waiting for an agent")
            if w.agent is not None and w.agent != agent:
                raise Conflict(f"this call is ringing {self.presence.name_of(w.agent)}, not you")
            if self.presence.state(agent) in (AgentState.on_call, AgentState.consulting):
                raise Conflict("you are on another call: finish it first")
            call = await self.assign(call_id, agent)
            self._waits.append(max(0.0, self.clock() - w.since))
            self._drop(w, reason=f"answered by {agent}")
            for other in [o for o in self._calls.values() if o.agent == agent]:
                self._move(other, agent, reason=f"{agent} answered another call")
        return call

    async def withdraw(self, call_id: str, *, reason: str) -> None:
        async with self._lock:
            if w := self._calls.get(call_id):
                self._drop(w, reason=reason)

    def on_notification(self, msg: Notification) -> None:
        """The orchestrator's: a call answered or ended some other way is no longer waiting."""
        if not isinstance(msg, CallStatusChanged):
            return
        answered = msg.payload.status in (CallStatus.active, CallStatus.ended, CallStatus.on_hold)
        if answered and msg.payload.call_id in self._calls:
            self._background.spawn(self.withdraw(msg.payload.call_id, reason=msg.payload.status.value))

    def _drop(self, w: WaitingCall, *, reason: str) -> None:
        self._calls.pop(w.call_id, None)
        self._told.pop(w.call_id, None)
        if timer := self._timers.pop(w.call_id, None):
            timer.cancel()
        if w.agent:
            self.presence.set_ringing(w.agent, None)
        msg = CallWithdrawn(payload=CallWithdrawnPayload(call_id=w.call_id, reason=reason))
        self.rooms.post(LOBBY, msg, [w.agent] if w.agent else None)
        self._tell_callers()

    # --- ringing ----------------------------------------------------------------------------------------
    def _route(self, w: WaitingCall, *, prefer: str | None = None) -> None:
        """Ring `prefer` if available, else the agent idle longest who has not missed this call;
        nobody: the call waits in the queue (every available agent sees it)."""
        free = self.presence.available(exclude=w.missed)
        agent = prefer if prefer in free else (free[0] if free else None)
        w.agent = agent
        if agent:
            self.presence.set_ringing(agent, w.call_id)
            self._timers[w.call_id] = asyncio.ensure_future(self._ring_timeout(w.call_id, agent))
            log.info("call %s rings %s", w.call_id, agent)
        self.rooms.post(LOBBY, self._incoming(w), [agent] if agent else None)
        self._tell_callers()

    async def _ring_timeout(self, call_id: str, agent: str) -> None:
        await asyncio.sleep(self.settings.offer_timeout_s)
        async with self._lock:
            w = self._calls.get(call_id)
            if w is None or w.agent != agent:
                return
            self._timers.pop(call_id, None)
            log.info("call %s: %s did not answer in %.0fs; moving on", call_id, agent, self.settings.offer_timeout_s)
            self._move(w, agent, reason="no answer")

    def _move(self, w: WaitingCall, agent: str, *, reason: str) -> None:
        w.missed.add(agent)
        self.presence.set_ringing(agent, None)
        if (timer := self._timers.pop(w.call_id, None)) and timer is not asyncio.current_task():
            timer.cancel()
        msg = CallWithdrawn(payload=CallWithdrawnPayload(call_id=w.call_id, reason=reason))
        self.rooms.post(LOBBY, msg, [agent])
        self._route(w)

    async def dispatch(self) -> None:
        """Presence changed: a call ringing an agent who went offline or away moves on; queued calls
        (oldest first) ring agents who became available."""
        async with self._lock:
            for w in sorted(self._calls.values(), key=lambda c: c.since):
                if w.agent and not (self.presence.is_online(w.agent) and self.presence.is_ready(w.agent)):
                    self._move(w, w.agent, reason="agent went away")
            for w in sorted(self._calls.values(), key=lambda c: c.since):
                if w.agent is None and self.presence.available(exclude=w.missed):
                    self._route(w)

    # --- what agents and callers see -------------------------------------------------------------
    def get(self, call_id: str) -> WaitingCall | None:
        return self._calls.get(call_id)

    def offers_for(self, agent: str) -> list[WaitingCall]:
        """Calls ringing this agent, and the queued ones while it is available."""
        available = agent in self.presence.available() or agent in {w.agent for w in self._calls.values()}
        return sorted(
            (w for w in self._calls.values() if w.agent == agent or (w.agent is None and available)),
            key=lambda w: w.since,
        )

    def waiting(self) -> list[WaitingCall]:
        return sorted(self._calls.values(), key=lambda w: w.since)

    def place(self, call_id: str) -> dict | None:
        """The caller's place in the queue (1 = next) and an estimated wait in seconds: callers
        ahead per agent taking calls, times the mean wait of recently answered calls (None when no
        agent is taking calls at all: nobody can say)."""
        order = self.waiting()
        try:
            place = next(i for i, w in enumerate(order, start=1) if w.call_id == call_id)
        except StopIteration:
            return None
        taking = sum(1 for v in self.presence.views().values() if v.state.value not in ("offline", "away"))
        per_caller = sum(self._waits) / len(self._waits) if self._waits else QUEUE_WAIT_PRIOR_S
        wait = None if taking == 0 else round(math.ceil(place / taking) * per_caller)
        return {"place": place, "estimated_wait_s": wait}

    def _incoming(self, w: WaitingCall) -> CallIncoming:
        return CallIncoming(
            payload=CallIncomingPayload(call_id=w.call_id, caller_name=w.caller_name, offered_to=w.agent)
        )

    def _tell_callers(self) -> None:
        """Each waiting caller's page, when what it shows changed: who it rings, its place, the wait."""
        for w in self.waiting():
            payload = {"call_id": w.call_id, "ringing": w.agent, "queue": self.place(w.call_id)}
            if self._told.get(w.call_id) != payload:
                self._told[w.call_id] = payload
                self.rooms.post(w.room, CallQueued(payload=CallQueuePayload.model_validate(payload)))

    async def recover(self, calls: list[Call]) -> None:
        """After a restart: calls still waiting for an agent queue again, in their order."""
        for call in sorted(calls, key=lambda c: c.created_at):
            if call.call_id not in self._calls:
                await self.add(call)
