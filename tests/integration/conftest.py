"""Integration fixtures: a started orchestrator (the control plane) against the real LiveKit
server and the session's real media worker, and a `CallWorld` that puts real realtime-SDK
participants (caller, A, B) into rooms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from control.rooms import Rooms
from control.store import Store
from control.transfer import LOBBY, TransferOrchestrator
from functions.gateway import FunctionsGateway
from functions.media_protocol import media_identity
from functions.models import Call, Transfer, TransferState
from functions.services import Services, build_services
from functions.settings import Settings
from tests.support.peer import Peer

CALLER_HZ, A_HZ, B_HZ = 440, 660, 880


async def end_everything(orch: TransferOrchestrator) -> None:
    """Test teardown: rooms this control plane opened are closed, so their media jobs leave the
    session's worker (a real app keeps them across its own restarts; a finished test does not)."""
    rooms = [c.room for c in orch.store.list_calls(include_ended=True)]
    rooms += [t.consult_room for t in orch.store.list_transfers()]
    await asyncio.wait_for(asyncio.gather(*(orch.rooms.delete_room(r) for r in rooms), return_exceptions=True), 10)


@contextlib.asynccontextmanager
async def running_orchestrator(
    settings: Settings,
    control_hub,
    *,
    cls: type[TransferOrchestrator] = TransferOrchestrator,
    services: Services | None = None,
    db_path: Path | None = None,
    gateway: Callable[[Services], FunctionsGateway] | None = None,
) -> AsyncIterator[TransferOrchestrator]:
    """A started orchestrator (`cls`) reached through the session's hub, and torn down after: its
    rooms closed, then it, its rooms client and its store. `gateway(services)` builds its gateway."""
    services = services or build_services(settings)
    store, rooms = Store(db_path or settings.database_path), Rooms(settings)
    orch = cls(services, store, rooms, **({"gateway": gateway(services)} if gateway else {}))
    unregister = control_hub.add(lambda: [orch])
    await orch.start()
    try:
        yield orch
    finally:
        await end_everything(orch)
        unregister()
        await orch.aclose()
        await rooms.aclose()
        store.close()


async def available_agent(orch: TransferOrchestrator, identity: str, *, name: str = "") -> Peer:
    """An agent as its desk makes it: connected to the lobby (the live connection presence counts) and
    taking calls. Returns its lobby peer (the caller of this disconnects it)."""
    url = orch.settings.livekit_url
    peer = await Peer(identity).connect(url, orch.agent_token(identity, LOBBY, name).token)
    await orch.presence.set_ready(identity, True, name=name or None)
    deadline = asyncio.get_running_loop().time() + 10
    while not orch.presence.is_online(identity):  # its webhook, or the next RoomService sync
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{identity} never showed up online")
        await asyncio.sleep(0.05)
    return peer


@pytest.fixture
async def orchestrator(control_settings, control_hub):
    async with running_orchestrator(control_settings, control_hub) as orch:
        yield orch


class CallWorld:
    """One call with a caller (440 Hz) talking to agent A (660 Hz); B (880 Hz) on standby."""

    def __init__(
        self, orch: TransferOrchestrator, a: str = "agent-a", b: str = "agent-b", *, record_hold: bool = False
    ) -> None:
        """`record_hold`: the caller keeps everything the call job plays (hold audio, announcements)."""
        self.orch = orch
        self.record_hold = record_hold
        self.a_id, self.b_id = a, b
        self.peers: list[Peer] = []
        self.call: Call
        self.transfer: Transfer | None = None

    async def start(self) -> CallWorld:
        """The call with its three peers connected; if any step fails, the peers made so far leave."""
        try:
            return await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> CallWorld:
        url = self.orch.settings.livekit_url
        self.call = await self.orch.start_call("Maria Lopez", agent_identity=self.a_id)
        tok = self.orch.caller_token(self.call.call_id, self.call.caller_identity)
        record = (media_identity(self.call.call_id),) if self.record_hold else ()
        self.caller = Peer(self.call.caller_identity, tone_hz=CALLER_HZ, record=record)
        self.peers.append(self.caller)
        await self.caller.connect(url, tok.token)
        self.a = await self.peer(self.a_id, A_HZ).connect(url, self.orch.agent_token(self.a_id, self.call.room).token)
        self.b_lobby = await available_agent(self.orch, self.b_id)  # B's desk: online, taking calls
        self.peers.append(self.b_lobby)
        await self.caller.wait_hears(self.a_id)
        await self.a.wait_hears(self.call.caller_identity)
        return self

    def peer(self, identity: str, hz: float | None) -> Peer:
        p = Peer(identity, tone_hz=hz)
        self.peers.append(p)
        return p

    @property
    def hold_id(self) -> str:
        """The call job: in the caller's room all call long, audible only while on hold."""
        return media_identity(self.call.call_id)

    async def initiate(self) -> Transfer:
        self.transfer = await self.orch.initiate(self.call.call_id, self.a_id, self.b_id)
        return self.transfer

    async def join_consult(self) -> None:
        url, room = self.orch.settings.livekit_url, self.transfer.consult_room
        self.a_consult = await self.peer(self.a_id, A_HZ).connect(url, self.orch.agent_token(self.a_id, room).token)
        self.b_consult = await self.peer(self.b_id, B_HZ).connect(url, self.orch.agent_token(self.b_id, room).token)

    async def b_joins_call(self) -> None:
        url = self.orch.settings.livekit_url
        tok = self.orch.agent_token(self.b_id, self.call.room).token
        self.b_call = await self.peer(self.b_id, B_HZ).connect(url, tok)

    async def wait_state(self, state: TransferState, timeout: float = 15.0) -> Transfer:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            t = self.orch.get_transfer(self.transfer.transfer_id)
            if t.state is state:
                return t
            await asyncio.sleep(0.05)
        raise AssertionError(f"transfer stayed {self.orch.get_transfer(self.transfer.transfer_id).state}, not {state}")

    async def wait_room_gone(self, room: str, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.orch.rooms.room_exists(room):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"room {room} still exists after {timeout}s")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for p in self.peers:
            with contextlib.suppress(Exception):
                await p.disconnect()


@pytest.fixture
async def world(orchestrator):
    w = await CallWorld(orchestrator).start()
    yield w
    await w.close()
