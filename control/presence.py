"""Agent presence in the control plane, derived from facts; the UI and the HTTP API share it.

An agent's state (`AgentState`) is worked out when asked, never stored as such:
- online: its participant is in the agents' lobby (`agents-lobby`). LiveKit's webhooks say so at
  once (`on_livekit_event`), and RoomService is asked every PRESENCE_SYNC_S as well, so a lost
  webhook costs seconds, not a wrong state. An agent whose browser closed is offline.
- what it is doing: the store (a call it is on, an open transfer it started or is offered), the
  waiting call ringing it (`control.routing.CallQueue`), and whether it is in the consult it is
  offered (webhooks again): offered but not there yet is `ringing`.
- wrap-up: WRAP_UP_S after its latest call ended or it handed its caller over (the store).
- whether it takes calls at all (`ready`): the agent's own choice, kept in the store. A sign-in in
  the UI starts not ready, so closing the browser and signing in again never lands an agent back
  in "available" unasked.

`available` = online, ready, and none of the above. Every change is announced in the lobby as
`presence.changed` and to `on_change` listeners (the call queue rings newly available agents).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from livekit import api

from control.rooms import Rooms
from control.store import Store
from functions.background import Background
from functions.errors import Conflict, InvalidInput, ServiceError
from functions.events import TRANSFER_PREFIX, CallStatusChanged, Notification, PresenceChanged, PresencePayload
from functions.models import AgentPublic, AgentState, CallStatus, TargetKind, TransferState, is_agent_identity
from functions.settings import Settings

log = logging.getLogger(__name__)
LOBBY = "agents-lobby"
PRESENCE_SYNC_S = 2.0  # RoomService is asked who is in the lobby this often (webhooks are the fast path)
S = TransferState
LABELS = {
    AgentState.offline: "Offline",
    AgentState.away: "Unavailable",
    AgentState.available: "Available",
    AgentState.ringing: "Ringing",
    AgentState.on_call: "On a call",
    AgentState.consulting: "Consulting",
    AgentState.wrap_up: "Wrap-up",
}
_RANK = {AgentState.ringing: 1, AgentState.on_call: 2, AgentState.consulting: 3}  # which activity shows


@dataclass(frozen=True)
class AgentView:
    """One agent as the UI and the API show it."""

    identity: str
    name: str
    state: AgentState
    queues: tuple[str, ...]
    idle_since: float | None  # when it became available (longest idle is offered first); None unless available

    def public(self) -> AgentPublic:
        return AgentPublic(
            identity=self.identity,
            name=self.name,
            state=self.state,
            label=LABELS[self.state],
            available=self.state is AgentState.available,
            busy=self.state in _RANK or self.state is AgentState.wrap_up,
            queues=list(self.queues),
            idle_since=self.idle_since,
        )


class Presence:
    def __init__(self, settings: Settings, store: Store, rooms: Rooms, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.store = store
        self.rooms = rooms
        self.clock = clock
        self.skills = settings.skills()
        self._credentialed = set(settings.agent_credentials())
        self._online: dict[str, float] = {}  # identity → since when its lobby participant is there
        self._lobby_names: dict[str, str] = {}  # identity → the name its lobby participant carries
        # identity → the sid of its lobby participant: a second sign-in replaces the first connection, and
        # the first one's `participant_left` (which may come after the second's join) is not the agent leaving.
        self._lobby_sids: dict[str, str] = {}
        self._fact_at: dict[str, float] = {}  # identity → when a webhook last changed `_online` (monotonic)
        self._in_consult: set[tuple[str, str]] = set()  # (consult room, identity) present
        self._ringing: dict[str, str] = {}  # identity → the waiting call ringing it (the call queue's)
        self.on_change: list[Callable[[], Awaitable[None]]] = []
        self._background = Background()
        self._pending: asyncio.Task | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Who is in the lobby and the consults now (after a restart too), then kept in step."""
        await self.sync()
        self._background.spawn(self._sync_forever())

    async def aclose(self) -> None:
        self._background.cancel()
        if self._pending:
            self._pending.cancel()

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_SYNC_S)
            try:
                await self.sync()
            except ServiceError as e:
                log.info("presence sync skipped: %s", e)

    async def sync(self) -> None:
        """Reconcile with RoomService: the lobby's participants, and who is in each open consult. An
        identity a webhook changed after the question was asked keeps what the webhook said."""
        asked = time.monotonic()
        lobby = {p.identity: p for p in await self.rooms.list_participants(LOBBY) if is_agent_identity(p.identity)}
        changed = False
        for identity, p in lobby.items():
            if self._fact_at.get(identity, 0.0) >= asked:
                continue  # a webhook since the question: it is newer
            self._lobby_sids[identity] = getattr(p, "sid", "")
            if identity not in self._online:
                self._online[identity] = self.clock()
                self._lobby_names[identity] = p.name
                changed = True
        for identity in [i for i in self._online if i not in lobby]:
            if self._fact_at.get(identity, 0.0) < asked:
                del self._online[identity]
                self._lobby_sids.pop(identity, None)
                changed = True
        consults: set[tuple[str, str]] = set()
        for t in self.store.list_transfers(open_only=True):
            if t.state is S.consulting:
                consults |= {(t.consult_room, i) for i in await self.rooms.identities(t.consult_room)}
        fresh = {i for i, at in self._fact_at.items() if at >= asked}
        in_consult = {c for c in consults if c[1] not in fresh} | {c for c in self._in_consult if c[1] in fresh}
        if in_consult != self._in_consult:
            self._in_consult = in_consult
            changed = True
        if changed:
            self.changed()

    # --- facts from LiveKit --------------------------------------------------------------------
    async def on_livekit_event(self, event: api.WebhookEvent) -> None:
        room, identity = event.room.name, event.participant.identity
        if not identity or not is_agent_identity(identity):
            return
        joined, left = event.event == "participant_joined", event.event == "participant_left"
        if room == LOBBY and (joined or left):
            self._fact_at[identity] = time.monotonic()
            sid = event.participant.sid
            if joined:
                self._online.setdefault(identity, self.clock())
                self._lobby_names[identity] = event.participant.name
                self._lobby_sids[identity] = sid
            elif not sid or self._lobby_sids.get(identity, sid) == sid:
                self._online.pop(identity, None)
                self._lobby_sids.pop(identity, None)
                log.info("agent %s left the lobby: offline", identity)
            else:
                return  # an earlier connection of an agent who is connected again
            self.changed()
        elif room.startswith("consult-") and (joined or left):
            self._fact_at[identity] = time.monotonic()
            (self._in_consult.add if joined else self._in_consult.discard)((room, identity))
            self.changed()

    async def confirm_online(self, identity: str) -> bool:
        """Ask RoomService now (a webhook may not have arrived yet)."""
        if identity in self._online:
            return True
        if identity in await self.rooms.identities(LOBBY):
            self._online.setdefault(identity, self.clock())
            self.changed()
            return True
        return False

    # --- what agents declare -----------------------------------------------------------------------
    async def sign_in(self, identity: str, name: str) -> None:
        """A sign-in in the UI: the agent's name, and not taking calls until it says so."""
        self.store.save_agent(identity, name=name, ready=False, at=self.clock())
        self.changed()

    async def set_ready(self, identity: str, ready: bool, *, name: str | None = None) -> AgentView:
        self.store.save_agent(identity, name=name, ready=ready, at=self.clock())
        self.changed()
        return self.view(identity)

    def set_ringing(self, identity: str, call_id: str | None) -> None:
        """The call queue: a waiting call rings this agent (or no longer does)."""
        if call_id is None:
            self._ringing.pop(identity, None)
        else:
            self._ringing[identity] = call_id
        self.changed()

    # --- derived ------------------------------------------------------------------------------------
    def is_online(self, identity: str) -> bool:
        return identity in self._online

    def is_ready(self, identity: str) -> bool:
        record = self.store.get_agent(identity)
        return bool(record and record.ready)

    def known(self, identity: str) -> bool:
        """An agent this server knows: configured (AGENTS, AGENT_SKILLS), seen before, or online now."""
        return (
            identity in self._credentialed
            or identity in self.skills
            or identity in self._online
            or self.store.get_agent(identity) is not None
        )

    def queues(self) -> dict[str, list[str]]:
        """Queue (skill) → its agents, from AGENT_SKILLS."""
        out: dict[str, list[str]] = {}
        for identity, queues in sorted(self.skills.items()):
            for q in queues:
                out.setdefault(q, []).append(identity)
        return dict(sorted(out.items()))

    def name_of(self, identity: str | None) -> str:
        if not identity:
            return ""
        record = self.store.get_agent(identity)
        return (record.name if record else "") or self._lobby_names.get(identity) or identity

    def views(self) -> dict[str, AgentView]:
        """Every known agent's state, from one pass over the store."""
        now = self.clock()
        records = {r.identity: r for r in self.store.list_agents()}
        activity = self._activity()
        ended = self.store.work_ended()
        identities = set(records) | set(self._online) | set(self.skills) | self._credentialed | set(activity)
        out = {}
        for identity in identities:
            record = records.get(identity)
            ended_at = ended.get(identity, 0.0)
            idle_since = None
            if identity not in self._online:
                state = AgentState.offline
            elif identity in activity:
                state = activity[identity]
            elif now - ended_at < self.settings.wrap_up_s:
                state = AgentState.wrap_up
            elif record is not None and record.ready:
                state = AgentState.available
                idle_since = max(self._online[identity], record.changed_at, ended_at + self.settings.wrap_up_s)
            else:
                state = AgentState.away
            name = (record.name if record else "") or self._lobby_names.get(identity) or identity
            out[identity] = AgentView(identity, name, state, tuple(sorted(self.skills.get(identity, ()))), idle_since)
        return out

    def _activity(self) -> dict[str, AgentState]:
        """Agents busy right now, from the store and the ringing offers."""
        busy: dict[str, AgentState] = {}

        def mark(identity: str | None, state: AgentState) -> None:
            if identity and _RANK[state] > _RANK.get(busy.get(identity), 0):  # type: ignore[arg-type]
                busy[identity] = state

        for call in self.store.list_calls():
            held = call.status is CallStatus.on_hold
            mark(call.agent_identity, AgentState.consulting if held else AgentState.on_call)
        for t in self.store.list_transfers(open_only=True):
            mark(t.from_agent, AgentState.consulting if t.state in (S.idle, S.consulting) else AgentState.on_call)
            if t.target_kind is TargetKind.agent:
                if t.state is S.consulting:
                    there = (t.consult_room, t.target) in self._in_consult
                    mark(t.target, AgentState.consulting if there else AgentState.ringing)
                else:
                    mark(t.target, AgentState.ringing if t.state is S.idle else AgentState.on_call)
        for identity in self._ringing:
            mark(identity, AgentState.ringing)
        return busy

    def view(self, identity: str) -> AgentView:
        views = self.views()
        return views.get(identity) or AgentView(identity, identity, AgentState.offline, (), None)

    def state(self, identity: str) -> AgentState:
        return self.view(identity).state

    def agents(self) -> list[AgentPublic]:
        return [v.public() for v in sorted(self.views().values(), key=lambda v: (v.name.lower(), v.identity))]

    def available(self, *, queue: str | None = None, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Available agents (with the skill `queue`), the one idle longest first."""
        free = [
            v
            for v in self.views().values()
            if v.state is AgentState.available
            and v.identity not in exclude
            and (queue is None or queue in self.skills.get(v.identity, ()))
        ]
        return [v.identity for v in sorted(free, key=lambda v: (v.idle_since or 0.0, v.identity))]

    async def check_target(self, identity: str) -> None:
        """A transfer to this agent may start: refused (nothing changes) with a clear error otherwise."""
        await self.confirm_online(identity)
        if not self.known(identity):
            raise InvalidInput(f"there is no agent '{identity}'")
        view = self.view(identity)
        if view.state is AgentState.offline:
            raise Conflict(f"{view.name} is offline")
        if view.state is AgentState.away:
            raise Conflict(f"{view.name} is not taking calls right now")
        if view.state is not AgentState.available:
            raise Conflict(f"{view.name} is busy ({LABELS[view.state].lower()}) and cannot take a transfer now")

    # --- announcements -------------------------------------------------------------------------------
    def changed(self) -> None:
        """Something presence depends on changed: announce it once, shortly (a burst is one message)."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._announce_soon())

    async def _announce_soon(self) -> None:
        await asyncio.sleep(0.05)
        self._pending = None
        msg = PresenceChanged(payload=PresencePayload(agents=self.agents()))
        self.rooms.post(LOBBY, msg)
        for listener in self.on_change:
            try:
                await listener()
            except Exception:
                log.exception("presence listener failed")

    def on_notification(self, msg: Notification) -> None:
        """The orchestrator's notifications: calls and transfers change who is busy. A call that ended
        (or a caller handed over) puts its agent in wrap-up, and its end is announced when it comes."""
        if not (msg.type.startswith(TRANSFER_PREFIX) or isinstance(msg, CallStatusChanged)):
            return
        self.changed()
        ends = msg.type == "transfer.completed" or (
            isinstance(msg, CallStatusChanged) and msg.payload.status is CallStatus.ended
        )
        if ends and self.settings.wrap_up_s > 0:
            self._background.spawn(self._after(self.settings.wrap_up_s + 0.1))

    async def _after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.changed()
