"""Agent presence, in memory: who is signed in, who is available, and which waiting
call is offered to whom.

- An agent signs in (online, unavailable), then goes available / unavailable.
- "First available" is the available agent who is not on a call and has waited longest.
- A waiting call is offered to one agent (the caller's pick, or the first available),
  or to nobody yet (queued): then every available agent sees it.
- Changes are announced to the agents' lobby (`agents-lobby`) as `presence.changed`
  (everyone) and `call.incoming` (the agent it is offered to, or everyone).

Presence is per process: a restart forgets it, and agents sign in again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from functions.errors import InvalidInput, NotFound
from functions.models import Notification

log = logging.getLogger(__name__)

# (message, identities or None for everyone in the lobby) → delivered?
Send = Callable[[Notification, list[str] | None], Awaitable[object]]
Busy = Callable[[str], bool]


@dataclass
class AgentPresence:
    identity: str
    name: str
    available: bool = False
    since: float = field(default_factory=time.time)  # when `available` last changed

    def public(self, busy: bool) -> dict:
        return {**asdict(self), "busy": busy}


@dataclass
class Offer:
    call_id: str
    caller_name: str
    agent: str | None  # None: queued for whoever is available
    at: float = field(default_factory=time.time)


async def _no_send(_msg: Notification, _to: list[str] | None) -> None:
    return None


class Presence:
    def __init__(self, *, busy: Busy | None = None, send: Send | None = None) -> None:
        self._agents: dict[str, AgentPresence] = {}
        self._offers: dict[str, Offer] = {}
        self.busy: Busy = busy or (lambda _identity: False)
        self.send: Send = send or _no_send

    # --- agents -------------------------------------------------------------------------
    async def sign_in(self, identity: str, name: str = "") -> AgentPresence:
        agent = self._agents.get(identity)
        if agent is None:
            agent = self._agents[identity] = AgentPresence(identity, name.strip() or identity)
        elif name.strip():
            agent.name = name.strip()
        await self.announce()
        return agent

    async def sign_out(self, identity: str) -> None:
        if self._agents.pop(identity, None) is not None:
            await self.announce()

    def get(self, identity: str) -> AgentPresence:
        try:
            return self._agents[identity]
        except KeyError:
            raise NotFound(f"agent {identity} is not signed in") from None

    def name_of(self, identity: str | None) -> str:
        if identity is None:
            return ""
        agent = self._agents.get(identity)
        return agent.name if agent else identity

    async def set_available(self, identity: str, available: bool) -> AgentPresence:
        agent = self.get(identity)
        if agent.available != available:
            agent.available = available
            agent.since = time.time()
        await self.announce()
        if available:  # queued calls become visible to this agent
            for offer in self._offers.values():
                if offer.agent is None:
                    await self.send(self._incoming(offer), [identity])
        return agent

    def is_available(self, identity: str) -> bool:
        agent = self._agents.get(identity)
        return bool(agent and agent.available)

    def agents(self) -> list[dict]:
        return [a.public(self.busy(a.identity)) for a in sorted(self._agents.values(), key=lambda a: a.name.lower())]

    def available(self, *, exclude: tuple[str, ...] = (), free_only: bool = False) -> list[AgentPresence]:
        return sorted(
            (
                a
                for a in self._agents.values()
                if a.available and a.identity not in exclude and not (free_only and self.busy(a.identity))
            ),
            key=lambda a: a.since,
        )

    def first_available(self, *, exclude: tuple[str, ...] = ()) -> str | None:
        """The available agent not on a call who has been waiting longest, or None."""
        free = self.available(exclude=exclude, free_only=True)
        return free[0].identity if free else None

    # --- offers of waiting calls ------------------------------------------------------------
    async def offer(self, call_id: str, caller_name: str, agent: str | None) -> Offer:
        """Offer a waiting call to `agent` (who must be available) or queue it (None)."""
        if agent is not None and not self.is_available(agent):
            raise InvalidInput(f"agent {agent} is not available")
        offer = self._offers[call_id] = Offer(call_id, caller_name, agent)
        await self.send(self._incoming(offer), [agent] if agent else None)
        return offer

    def offers_for(self, agent: str) -> list[Offer]:
        """Calls offered to this agent, and queued ones when the agent is available."""
        mine = [o for o in self._offers.values() if o.agent == agent]
        queued = [o for o in self._offers.values() if o.agent is None] if self.is_available(agent) else []
        return sorted(mine + queued, key=lambda o: o.at)

    def offer_of(self, call_id: str) -> Offer | None:
        return self._offers.get(call_id)

    async def withdraw(self, call_id: str, *, reason: str = "") -> Offer | None:
        """The call was answered, or ended before it was: everyone who saw it is told."""
        offer = self._offers.pop(call_id, None)
        if offer is not None:
            msg = Notification(type="call.withdrawn", payload={"call_id": call_id, "reason": reason})
            await self.send(msg, [offer.agent] if offer.agent else None)
        return offer

    # --- notifications -------------------------------------------------------------------
    def _incoming(self, offer: Offer) -> Notification:
        payload = {"call_id": offer.call_id, "caller_name": offer.caller_name, "offered_to": offer.agent}
        return Notification(type="call.incoming", payload=payload)

    async def announce(self) -> None:
        await self.send(Notification(type="presence.changed", payload={"agents": self.agents()}), None)
