"""What the browser UI may ask the server, as `gr.HTML` server functions.

Every function takes one JSON object and returns one: `{"error": "...", "kind": "..."}` when
refused (never an exception page); `kind` is the error's class (`SessionExpired`: sign in again,
`Conflict`, `InvalidInput`, …), which is what the browser decides on, never the words. Agents
prove who they are with the session from `agent_sign_in` (the passcode is checked once there);
callers with the ticket their call was created with, which names exactly one call. Authorization
of rooms is the orchestrator's (`agent_token`, `caller_token`).

The blocks are built before the app starts, so the context's parts are looked up at
call time (`self.ctx.orchestrator`, …).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from control.announcements import hold_announcement
from control.names import NAME_MAX_CHARS, normalize_name
from control.presence import LOBBY, Presence
from control.state_machine import ROLLBACK_STATES
from functions.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError, SessionExpired
from functions.events import CallsChanged, CallsChangedPayload, Notification, TransferChanged
from functions.models import (
    TERMINAL_STATES,
    Call,
    CallStatus,
    Transfer,
    TransferState,
    is_agent_identity,
)

log = logging.getLogger(__name__)
NAME_MAX = NAME_MAX_CHARS
SESSION_TTL_S = 12 * 3600  # an agent signs in again after a working day


@dataclass
class AgentSession:
    identity: str
    name: str
    created_at: float


def _safe(fn: Callable[..., Awaitable[dict]]) -> Callable[..., Awaitable[dict]]:
    """Turn refusals into `{"error": message}`; anything unexpected is logged, not leaked."""

    @functools.wraps(fn)
    async def wrapper(self, data: object = None) -> dict:
        args = data if isinstance(data, dict) else {}
        try:
            return await fn(self, args)
        except ServiceError as e:
            return {"error": e.message, "kind": type(e).__name__}
        except Exception:
            log.exception("UI function %s failed", fn.__name__)
            return {"error": "Something went wrong on the server; try again.", "kind": "internal"}

    return wrapper


def _name(args: dict, key: str) -> str:
    """A display name someone typed (the caller's name, an agent's name): normalised for
    display by `control.names` (no bidi or zero-width characters, NFC, one line)."""
    value = args.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be text")
    if len(value) > 4 * NAME_MAX:  # bound the work before normalising; the real limit is checked after
        raise InvalidInput(f"{key} is longer than {NAME_MAX} characters")
    return normalize_name(value, field=key, max_chars=NAME_MAX)


def _text(args: dict, key: str, limit: int = NAME_MAX) -> str:
    value = args.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be text")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{key} is longer than {limit} characters")
    return value


class UiBackend:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._sessions: dict[str, AgentSession] = {}
        self._summaries: dict[str, dict] = {}  # transfer_id → CallSummary (json)
        self._tasks: set[asyncio.Task] = set()

    # --- wiring ---------------------------------------------------------------------------
    def on_notification(self, msg: Notification) -> None:
        """Every notification of the control plane (a follower of the context's bus: control/wiring.py)."""
        if isinstance(msg, TransferChanged) and msg.type == "transfer.consulting" and msg.payload.summary is not None:
            self._summaries[msg.payload.transfer.transfer_id] = msg.payload.summary.model_dump(mode="json")
        # Agents' dashboards follow every change (presence announces its own: `presence.changed`).
        self._spawn(self._send_lobby(CallsChanged(payload=CallsChangedPayload(cause=msg.type)), None))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_lobby(self, msg: Notification, identities: list[str] | None) -> None:
        if self.ctx.rooms is not None:
            await self.ctx.rooms.send(LOBBY, msg, identities)

    @property
    def orch(self):
        if self.ctx.orchestrator is None:
            raise ServiceError("the server is still starting; try again in a moment", retryable=True)
        return self.ctx.orchestrator

    @property
    def presence(self) -> Presence:
        """The control plane's presence (the orchestrator's, shared with the HTTP API)."""
        return self.orch.presence

    def _current_call(self, identity: str) -> Call | None:
        calls = [c for c in self.ctx.store.list_calls() if c.agent_identity == identity]
        return calls[-1] if calls else None

    # --- agent sessions -----------------------------------------------------------------------
    def _agent(self, args: dict) -> AgentSession:
        token = args.get("session")
        session = self._sessions.get(token) if isinstance(token, str) else None
        if session is not None and time.time() - session.created_at > SESSION_TTL_S:
            self._sessions.pop(token, None)
            session = None
        if session is None:
            raise SessionExpired("please sign in again")
        return session

    def _token(self, agent: AgentSession, room: str) -> dict:
        return self.orch.agent_token(agent.identity, room, agent.name).model_dump()

    # --- caller functions ----------------------------------------------------------------------
    @_safe
    async def caller_agents(self, _args: dict) -> dict:
        """Agents a caller may pick: available now (names only)."""
        free = self.presence.available()
        return {"agents": [{"identity": a, "name": self.presence.name_of(a)} for a in free]}

    @_safe
    async def caller_start(self, args: dict) -> dict:
        """A new call: it rings the picked agent (or the one idle longest), else waits in the queue."""
        name = _name(args, "name")
        pick = _text(args, "agent", 64)
        call = await self.orch.start_call(name, pick=pick or None)
        ticket = self.ctx.auth.caller_ticket(call.call_id, call.caller_identity)
        token = self.orch.caller_token(call.call_id, call.caller_identity)
        self._spawn(self._send_lobby(CallsChanged(payload=CallsChangedPayload(cause="call.new")), None))
        return {
            "call_id": call.call_id,
            "identity": call.caller_identity,
            "ticket": ticket,
            "token": token.model_dump(),
            **self._caller_view(call),
        }

    def _caller(self, args: dict) -> Call:
        call_id, identity, ticket = (args.get(k) for k in ("call_id", "identity", "ticket"))
        if not all(isinstance(v, str) and v for v in (call_id, identity, ticket)):
            raise Forbidden("this call is not yours")
        self.ctx.auth.check_caller(call_id, identity, ticket)
        return self.ctx.store.get_call(call_id)

    def _caller_view(self, call: Call) -> dict:
        """What a caller may know: status, who they talk to or whose phone rings, their place in the
        queue, what they are told on hold, and whether that agent took the call over (`transferred`) or
        is back after a transfer that did not happen (`back`); never summaries. From the store, so a
        reloaded page says the same as the one before it."""
        waiting = self.orch.calls.get(call.call_id)
        ringing = waiting.agent if waiting else None
        note, joining = "", None
        transfers = self.ctx.store.list_transfers(call_id=call.call_id)
        last = transfers[-1] if transfers else None
        active = call.status is CallStatus.active
        open_ = [t for t in transfers if t.state not in TERMINAL_STATES]
        if call.status is CallStatus.on_hold and open_:
            note = hold_announcement(self.ctx.settings, open_[0])
        elif open_ and open_[0].state is TransferState.introducing and active:
            joining = open_[0].target  # three-way: the caller talks to A and B
        return {
            "status": call.status.value,
            "agent": call.agent_identity,
            "agent_name": self.presence.name_of(call.agent_identity),
            "ringing": ringing,
            "ringing_name": self.presence.name_of(ringing),
            "queue": self.orch.calls.place(call.call_id) if waiting else None,
            "note": note,
            "with": joining,
            "with_name": self.presence.name_of(joining),
            "transferred": active and any(t.state is TransferState.completed for t in transfers),
            "back": active and last is not None and last.state in ROLLBACK_STATES,
        }

    @_safe
    async def caller_status(self, args: dict) -> dict:
        return self._caller_view(self._caller(args))

    @_safe
    async def caller_token(self, args: dict) -> dict:
        call = self._caller(args)
        return {"token": self.orch.caller_token(call.call_id, call.caller_identity).model_dump()}

    @_safe
    async def caller_hangup(self, args: dict) -> dict:
        call = self._caller(args)
        call = await self.orch.end_call(call.call_id, actor=call.caller_identity)
        await self.orch.calls.withdraw(call.call_id, reason="caller hung up")
        return self._caller_view(call)

    # --- agent functions ----------------------------------------------------------------------
    @_safe
    async def agent_sign_in(self, args: dict) -> dict:
        identity = _text(args, "identity", 64)
        name = _name(args, "name") or identity
        if not is_agent_identity(identity):
            raise InvalidInput("agent id: 1-64 letters, digits, '_', '.', ':' or '-' (not caller-/hold-/briefing-)")
        passcode = args.get("passcode") if isinstance(args.get("passcode"), str) else ""
        self.orch  # noqa: B018 — started?
        self.ctx.auth.check_agent(identity, passcode=passcode)
        now = time.time()
        elsewhere = [
            k for k, s in self._sessions.items() if s.identity == identity and now - s.created_at < SESSION_TTL_S
        ]
        if elsewhere and args.get("replace") is not True:
            # LiveKit would silently drop the other tab's connections (same identity): ask first.
            raise Conflict(f"{identity} is already signed in elsewhere; sign in here instead to end that session")
        for k in elsewhere:
            del self._sessions[k]  # that tab's next request says "sign in again"
        if elsewhere:
            log.info("agent %s signed in again: %d earlier session(s) ended", identity, len(elsewhere))
        await self.orch.ensure_lobby()
        session = secrets.token_urlsafe(24)
        self._sessions[session] = AgentSession(identity, name, time.time())
        await self.presence.sign_in(identity, name)  # not taking calls until the agent says so
        agent = self._sessions[session]
        return {"session": session, "identity": identity, "name": name, "lobby": self._token(agent, LOBBY)}

    @_safe
    async def agent_sign_out(self, args: dict) -> dict:
        agent = self._agent(args)
        self._sessions.pop(args["session"], None)
        if not any(s.identity == agent.identity for s in self._sessions.values()):
            await self.presence.set_ready(agent.identity, False)  # offline once its lobby connection is gone
        return {"ok": True}

    @_safe
    async def agent_state(self, args: dict) -> dict:
        return self._snapshot(self._agent(args))

    @_safe
    async def agent_available(self, args: dict) -> dict:
        agent = self._agent(args)
        await self.presence.set_ready(agent.identity, bool(args.get("available")), name=agent.name)
        return self._snapshot(agent)

    @_safe
    async def agent_accept_call(self, args: dict) -> dict:
        agent = self._agent(args)
        call_id = _text(args, "call_id", 64)
        call = await self.orch.calls.accept(call_id, agent.identity)
        return {"call": self._call_view(call), "token": self._token(agent, call.room), **self._snapshot(agent)}

    @_safe
    async def agent_room_token(self, args: dict) -> dict:
        agent = self._agent(args)
        room = _text(args, "room", 64)
        if room == LOBBY:
            await self.orch.ensure_lobby()  # a reload after a day without agents
        # A reloaded desk rejoins its call room during the hold too: silent and deaf until it ends.
        return {"token": self.orch.agent_token(agent.identity, room, agent.name, while_held=True).model_dump()}

    @_safe
    async def agent_end_call(self, args: dict) -> dict:
        agent = self._agent(args)
        call = self.ctx.store.get_call(_text(args, "call_id", 64))
        if call.agent_identity != agent.identity:
            raise Forbidden("you are not on this call")
        await self.orch.end_call(call.call_id, actor=agent.identity)
        return self._snapshot(agent)

    @_safe
    async def agent_transfer(self, args: dict) -> dict:
        agent = self._agent(args)
        call_id, target = _text(args, "call_id", 64), _text(args, "target", 64)
        if not target:
            raise InvalidInput("pick an agent or a queue, or enter a phone number")
        # "queue:<name>" is a queue; the orchestrator refuses an unavailable agent or an empty queue.
        t = await self.orch.initiate(call_id, agent.identity, target)
        return {"transfer": self._transfer_view(t), **self._snapshot(agent)}

    @_safe
    async def agent_transfer_action(self, args: dict) -> dict:
        agent = self._agent(args)
        tid, action = _text(args, "transfer_id", 64), _text(args, "action", 16)
        if action in ("accept", "complete"):
            t = await self.orch.accept(tid, actor=agent.identity)
        elif action == "introduce":
            t = await self.orch.introduce(tid, actor=agent.identity)
        elif action == "leave":
            t = await self.orch.leave(tid, actor=agent.identity)
        elif action == "decline":
            t = await self.orch.decline(tid, actor=agent.identity, reason=_text(args, "reason", 200))
        elif action == "cancel":
            t = await self.orch.cancel(tid, actor=agent.identity)
        else:
            raise InvalidInput(f"unknown transfer action {action!r}")
        out = {"transfer": self._transfer_view(t), **self._snapshot(agent)}
        if action in ("accept", "complete") and t.target == agent.identity:
            out["join"] = self._token(agent, t.call_room)
        return out

    @_safe
    async def dashboard(self, args: dict) -> dict:
        self._agent(args)
        store = self.ctx.store
        calls = sorted(store.list_calls(include_ended=True), key=lambda c: c.created_at, reverse=True)[:30]
        transfers = sorted(store.list_transfers(), key=lambda t: t.updated_at, reverse=True)[:30]
        return {
            "now": time.time(),
            # Which backend runs the service functions (local or Modal, and any fallback), so
            # whoever watches the board knows where summaries and speech come from.
            "functions_backend": self.ctx.gateway.backend_label,
            "functions": self.function_status(),
            "live_transcription": self.ctx.settings.live_transcription,
            "agents": [a.model_dump(mode="json") for a in self.presence.agents()],
            "queues": self._queues(),
            "calls": [self._call_view(c) for c in calls],
            "transfers": [self._transfer_view(t, with_summary=False) for t in transfers],
        }

    # --- views ------------------------------------------------------------------------------------
    def function_status(self) -> list[dict]:
        """Per service function: where it last ran (here or in a media worker), whether it fell back
        and why, when. The control plane's gateway merged with what the media jobs reported."""
        orch = self.ctx.orchestrator
        statuses = orch.function_status if orch is not None else self.ctx.gateway.function_status
        return [st.model_dump(mode="json") for st in statuses]

    def _call_view(self, call: Call) -> dict:
        return {
            **call.model_dump(mode="json"),
            "agent_name": self.presence.name_of(call.agent_identity),
        }

    def _queues(self) -> list[dict]:
        """Queues (skills) with their agents and how many are available now."""
        available = set(self.presence.available())
        return [
            {"name": q, "agents": members, "available": sum(1 for m in members if m in available)}
            for q, members in self.presence.queues().items()
        ]

    def _transfer_view(self, t: Transfer, *, with_summary: bool = True) -> dict:
        view = t.model_dump(mode="json")
        view["from_name"] = self.presence.name_of(t.from_agent)
        view["target_name"] = self.presence.name_of(t.target) if t.target_kind.value == "agent" else t.target
        view["open"] = t.is_open
        view["queue"] = t.queue
        view["introduced"] = any(e.detail.get("event") == "introduced" for e in t.events)
        if t.target_kind.value == "phone":
            leg = self.ctx.phone.leg(t.transfer_id) if self.ctx.phone else None
            view["phone_leg"] = {"status": leg.status, "answered_by": leg.answered_by} if leg else None
        if with_summary:
            view["summary"] = self._summaries.get(t.transfer_id)
            view["qa"] = [q.model_dump(mode="json") for q in self.ctx.store.qa(t.transfer_id)]  # B asked the briefing
            try:
                view["caller_name"] = self.ctx.store.get_call(t.call_id).caller_name
            except NotFound:
                view["caller_name"] = ""
        return view

    def _snapshot(self, agent: AgentSession) -> dict:
        me = agent.identity
        store = self.ctx.store
        call = self._current_call(me)
        open_transfers = store.list_transfers(open_only=True)
        out = next((t for t in open_transfers if t.from_agent == me), None)
        incoming_transfer = next((t for t in open_transfers if t.target == me), None)
        latest = None
        if call is not None:
            on_call = store.list_transfers(call_id=call.call_id)
            latest = on_call[-1] if on_call else None
        phone = self.ctx.phone
        view = self.presence.view(me)
        return {
            "me": {
                "identity": me,
                "name": agent.name,
                "state": view.state.value,
                "ready": self.presence.is_ready(me),
                **view.public().model_dump(mode="json", include={"label", "available", "busy", "queues"}),
            },
            "agents": [a.model_dump(mode="json") for a in self.presence.agents()],
            "queues": self._queues(),
            "incoming": [
                {"call_id": w.call_id, "caller_name": w.caller_name, "offered_to": w.agent, "at": w.since}
                for w in self.orch.calls.offers_for(me)
            ],
            "call": self._call_view(call) if call else None,
            "transfer_out": self._transfer_view(out) if out else None,
            "transfer_in": self._transfer_view(incoming_transfer) if incoming_transfer else None,
            "latest_transfer": self._transfer_view(latest) if latest else None,
            "call_status": call.status.value if call else None,
            "on_hold": bool(call and call.status is CallStatus.on_hold),
            # What a phone target can do here: nothing without Twilio; without LIVEKIT_SIP_URI the
            # number hears the brief and answers, but cannot be bridged into the caller's room.
            "phone": {"enabled": phone is not None, "can_bridge": bool(phone and phone.can_bridge)},
        }

    def caller_functions(self) -> list[Callable]:
        return _expose(self.caller_agents, self.caller_start, self.caller_status, self.caller_token, self.caller_hangup)

    def agent_functions(self) -> list[Callable]:
        return _expose(
            self.agent_sign_in,
            self.agent_sign_out,
            self.agent_state,
            self.agent_available,
            self.agent_accept_call,
            self.agent_room_token,
            self.agent_end_call,
            self.agent_transfer,
            self.agent_transfer_action,
            self.dashboard,
        )


def _expose(*methods: Callable[[object], Awaitable[dict]]) -> list[Callable]:
    """Plain functions named like the methods: gradio marks server functions with an attribute."""
    out = []
    for method in methods:

        async def fn(data: object = None, _method=method) -> dict:
            return await _method(data)

        fn.__name__ = fn.__qualname__ = method.__name__
        out.append(fn)
    return out
