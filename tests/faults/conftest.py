"""Fault-injection fixtures: the real app (`create_app`, in process, ASGI) on the session's real
livekit-server and media worker, driven over its HTTP API as an outside client would, with
realtime-SDK peers (tests/support/peer.py) for the caller and the agents, and a `Scene` that knows
how to read the end state from all three places a user could notice it:

- the store (`GET /api/transfer/{id}`, and the call's row);
- LiveKit (RoomService: who is in which room, A's permissions, the hold flag), and the decoded audio
  each peer hears (who hears whom);
- what each peer was told (the data messages it received: `transfer.*` in the agents' lobby,
  `call.status` in the caller's room).

Every item here gets the `faults` marker and a time bound; every teardown is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from app import create_app
from control.state_machine import ALLOWED
from control.transfer import LOBBY, TransferOrchestrator
from functions.media_protocol import CallRoomState, briefing_identity, media_identity
from functions.models import TERMINAL_STATES, CallStatus, TransferState
from functions.tts.speech import EspeakSpeaker
from tests.integration.conftest import end_everything
from tests.support.peer import Peer
from tests.support.peer_process import PeerProcess

API_KEY = "faults-api-key-0123456789"
A, B = "agent-a", "agent-b"
CALLER_HZ, A_HZ, B_HZ = 440, 660, 880
ITEM_TIMEOUT_S = 180
S = TransferState


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(ITEM_TIMEOUT_S))


def headers(identity: str) -> dict[str, str]:
    return {"X-API-Key": API_KEY, "X-Agent-Identity": identity}


@pytest.fixture
def fault_settings(control_settings):
    """Auth enforced; timers short enough for a bounded suite, long enough for a busy 2-core machine."""
    return control_settings.model_copy(
        update={
            "api_key": SecretStr(API_KEY),
            "live_transcription": False,
            "join_timeout_s": 6.0,
            "caller_grace_s": 2.0,
            "ring_timeout_s": 30.0,
            "accept_timeout_s": 90.0,
        }
    )


@contextlib.asynccontextmanager
async def running_app(settings, control_hub, **providers):
    """The real app, started (lifespan), reached by the session's webhooks and job reports; torn down
    bounded: its rooms closed, then its own shutdown."""
    app = create_app(settings, speaker=EspeakSpeaker(settings), **providers)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        ctx = app.state.ctx
        unregister = control_hub.add(ctx.sinks)
        try:
            yield app
        finally:
            if ctx.orchestrator:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(end_everything(ctx.orchestrator), 15)
            unregister()


@pytest.fixture
def store_connection() -> type[sqlite3.Connection]:
    """The class of the app's SQLite connections (tests/faults/test_storage.py gives one it controls)."""
    return sqlite3.Connection


@pytest.fixture
async def app(fault_settings, control_hub, store_connection):
    async with running_app(fault_settings, control_hub, store_connection=store_connection) as app:
        yield app


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://faults.test", timeout=60) as c:
        yield c


@pytest.fixture
async def scene(app, client):
    s = Scene(app, client)
    try:
        yield s
    finally:
        await s.close()


class Scene:
    """One call through the HTTP API: the caller (440 Hz) talking to A (660 Hz), A and B in the agents'
    lobby (as their desks are), B (880 Hz) joining the consult and the call when the test says so."""

    def __init__(self, app, client: httpx.AsyncClient, a: str = A, b: str = B) -> None:
        self.app, self.client = app, client
        self.a_id, self.b_id = a, b  # several scenes at once need agents of their own (one identity, one seat)
        self.peers: list[Peer] = []
        self.processes: list[PeerProcess] = []
        self.transfer: dict | None = None
        self.b_call: Peer | None = None
        self.a_consult: Peer | None = None
        self.b_consult: Peer | None = None

    @property
    def orch(self) -> TransferOrchestrator:
        return self.app.state.ctx.orchestrator

    @property
    def url(self) -> str:
        return self.orch.settings.livekit_url

    # --- the API, as clients call it ----------------------------------------------------------------
    async def post(self, path: str, body: dict, agent: str | None = None) -> httpx.Response:
        return await self.client.post(f"/api{path}", json=body, headers=headers(agent) if agent else {})

    async def ok(self, path: str, body: dict, agent: str | None = None) -> dict:
        r = await self.post(path, body, agent)
        assert r.status_code in (200, 201), f"{path}: {r.status_code} {r.text}"
        return r.json()

    async def agent_token(self, agent: str, room: str) -> str:
        return (await self.ok("/tokens", {"role": "agent", "room": room, "name": agent}, agent))["token"]

    def peer(self, identity: str, hz: float | None, *, listen: bool = True) -> Peer:
        p = Peer(identity, tone_hz=hz, listen=listen)
        self.peers.append(p)
        return p

    async def start(self, *, killable: frozenset[str] = frozenset(), utterances: bool = False) -> Scene:
        """The call with the caller and A talking, both agents in the lobby. `killable` ⊆ {"caller", "a"}:
        those run in a process of their own (`self.caller_proc`, `self.a_proc`), so the test can kill them.
        `utterances`: the caller speaks in utterances (1 s of tone, 1 s of silence) instead of one endless
        tone, so live transcription sends each one to speech-to-text as it ends."""
        created = await self.ok("/rooms/create", {"caller_name": "Maria Lopez", "agent_identity": self.a_id}, self.a_id)
        self.call = created["call"]
        self.caller_id = created["caller_identity"]
        self.caller_ticket = created["caller_ticket"]
        a_lobby, b_lobby = await self.agent_token(self.a_id, LOBBY), await self.agent_token(self.b_id, LOBBY)
        self.a_lobby = await self.peer(self.a_id, None, listen=False).connect(self.url, a_lobby)
        self.b_lobby = await self.peer(self.b_id, None, listen=False).connect(self.url, b_lobby)
        await self.make_available(self.b_id)
        if "caller" in killable:
            self.caller_proc = await self.process(self.caller_id, CALLER_HZ, self.room, await self.caller_token())
        elif utterances:
            self.caller = self.peer(self.caller_id, None)
            self.caller.voice = True
            await self.caller.connect(self.url, await self.caller_token())
            self.caller.spawn(_keep_talking(self.caller))
        else:
            self.caller = await self.peer(self.caller_id, CALLER_HZ).connect(self.url, await self.caller_token())
        if "a" in killable:
            self.a_proc = await self.process(self.a_id, A_HZ, self.room)
            await wait_for(lambda: self.a_proc.ask("hears", self.caller_id), 20, f"{self.a_id} hearing the caller")
        else:
            self.a = await self.peer(self.a_id, A_HZ).connect(self.url, await self.agent_token(self.a_id, self.room))
            await self.a.wait_hears(self.caller_id, timeout=20)
        if "caller" not in killable:
            await self.caller.wait_hears(self.a_id, timeout=20)
        return self

    async def make_available(self, agent: str) -> None:
        """A transfer goes only to an agent signed in with a live lobby connection and taking calls."""
        await self.ok("/agents/availability", {"available": True}, agent)
        await wait_for(lambda: self.orch.presence.is_online(agent), 10, f"{agent} online")

    async def process(self, identity: str, hz: float | None, room: str, token: str | None = None) -> PeerProcess:
        """A peer of this scene in a process of its own (to be killed)."""
        token = token or await self.agent_token(identity, room)
        proc = PeerProcess(identity, hz)
        self.processes.append(proc)
        try:
            return await asyncio.to_thread(proc.start, self.url, token)
        except AssertionError as e:  # say what the state was, for the log
            state = await self.db_transfer() if self.transfer else None
            raise AssertionError(f"{e}; call {self.db_call()}; transfer {state}") from None

    async def caller_token(self) -> str:
        body = {"role": "caller", "call_id": self.call_id, "caller_identity": self.caller_id}
        return (await self.ok("/tokens", {**body, "ticket": self.caller_ticket}))["token"]

    @property
    def call_id(self) -> str:
        return self.call["call_id"]

    @property
    def room(self) -> str:
        return self.call["room"]

    @property
    def hold_id(self) -> str:
        return media_identity(self.call_id)

    @property
    def tid(self) -> str:
        assert self.transfer is not None
        return self.transfer["transfer_id"]

    async def initiate(self, target: str | None = None) -> httpx.Response:
        body = {"call_id": self.call_id, "target": target or self.b_id}
        r = await self.post("/transfer/initiate", body, self.a_id)
        if r.status_code == 201:
            self.transfer = r.json()
        return r

    async def join_consult(self, *, killable: frozenset[str] = frozenset(), listen: bool = False) -> None:
        """A and B join the consult room; `killable` ⊆ {"a", "b"} as in `start` (`a_consult_proc`, ...);
        `listen`: B measures what it hears there (the brief, A)."""
        room = self.transfer["consult_room"]  # type: ignore[index]
        if "a" in killable:
            self.a_consult_proc = await self.process(self.a_id, A_HZ, room)
        else:
            a_token = await self.agent_token(self.a_id, room)
            self.a_consult = await self.peer(self.a_id, A_HZ, listen=False).connect(self.url, a_token)
        if "b" in killable:
            self.b_consult_proc = await self.process(self.b_id, B_HZ, room)
        else:
            b_token = await self.agent_token(self.b_id, room)
            self.b_consult = await self.peer(self.b_id, B_HZ, listen=listen).connect(self.url, b_token)

    async def accept(self) -> httpx.Response:
        return await self.post("/transfer/complete", {"transfer_id": self.tid}, self.b_id)

    async def cancel(self) -> httpx.Response:
        return await self.post("/transfer/cancel", {"transfer_id": self.tid}, self.a_id)

    async def decline(self) -> httpx.Response:
        return await self.post("/transfer/decline", {"transfer_id": self.tid, "reason": "busy"}, self.b_id)

    async def hang_up(self) -> None:
        """What the caller's page does on "Hang up": end the call, then leave the room."""
        await self.orch.end_call(self.call_id, actor=self.caller_id)
        await self.caller.disconnect()

    async def b_joins_call(self, token: str) -> Peer:
        self.b_call = await self.peer(self.b_id, B_HZ).connect(self.url, token)
        return self.b_call

    # --- reading the end state ----------------------------------------------------------------------
    def db_call(self):
        return self.orch.store.get_call(self.call_id)

    async def db_transfer(self) -> dict:
        r = await self.client.get(f"/api/transfer/{self.tid}", headers=headers(self.a_id))
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_transfer(self, *states: TransferState, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            t = await self.db_transfer()
            if t["state"] in states:
                return t
            assert time.monotonic() < deadline, f"transfer stayed {t['state']}, not {[s.value for s in states]}"
            await asyncio.sleep(0.05)

    async def wait_call(self, status: CallStatus, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while (call := self.db_call()).status is not status:
            assert time.monotonic() < deadline, f"call stayed {call.status.value}, not {status.value}"
            await asyncio.sleep(0.05)
        return call

    async def identities(self, room: str) -> set[str]:
        return await self.orch.rooms.identities(room)

    async def wait_identities(self, room: str, want: set[str], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (have := await self.identities(room)) != want:
            assert time.monotonic() < deadline, f"{room} holds {sorted(have)}, not {sorted(want)}"
            await asyncio.sleep(0.1)

    async def wait_gone(self, room: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.orch.rooms.room_exists(room):
            assert time.monotonic() < deadline, f"room {room} still exists after {timeout}s"
            await asyncio.sleep(0.1)

    async def hold_flag(self) -> bool | None:
        rooms = await self.orch.rooms.list_rooms([self.room])
        return CallRoomState.model_validate_json(rooms[0].metadata or "{}").hold if rooms else None

    async def permissions(self, identity: str) -> tuple[bool, bool] | None:
        for p in await self.orch.rooms.list_participants(self.room):
            if p.identity == identity:
                return p.permission.can_publish, p.permission.can_subscribe
        return None

    async def wait_caller_told(self, status: str, agent: str | None, timeout: float = 10.0) -> None:
        """The caller's page shows what the last `call.status` it received says: it must be the truth."""

        def last() -> tuple[str, str | None] | None:
            said = [m["payload"] for m in self.caller.messages if m.get("type") == "call.status"]
            return (said[-1]["status"], said[-1]["agent"]) if said else None

        await self.caller.wait_until(lambda: last() == (status, agent), timeout, f"the caller told {status}/{agent}")

    @staticmethod
    def told(peer: Peer, prefix: str = "transfer.") -> list[str]:
        return [m.get("type", "") for m in peer.messages if m.get("type", "").startswith(prefix)]

    async def assert_told(self, peer: Peer, state: str, *, timeout: float = 10.0) -> None:
        await peer.wait_message(
            lambda m: m.get("type") == f"transfer.{state}" and m["payload"]["transfer"]["transfer_id"] == self.tid,
            timeout=timeout,
        )

    def assert_only_true_states_told(self, t: dict) -> None:
        """Nobody was told a state the transfer never had (a race's loser announced nothing)."""
        had = {e["to_state"] for e in t["events"]}
        for p in (self.a_lobby, self.b_lobby):
            said = {m.removeprefix("transfer.") for m in self.told(p)} - {"summary"}
            assert said <= had, f"{p.identity} was told {sorted(said - had)}, which the transfer never was"

    @staticmethod
    def assert_legal_path(t: dict) -> None:
        path = [(e["from_state"], e["to_state"]) for e in t["events"]]
        for a, b in path:
            assert TransferState(b) in ALLOWED[TransferState(a)], f"illegal step {a} → {b} in {path}"
        assert [b for _, b in path].count(t["state"]) == 1 and TransferState(t["state"]) in TERMINAL_STATES

    # --- the three end states a call can be in after a transfer -------------------------------------------
    async def assert_back_with_a(self, state: TransferState) -> None:
        """The caller is back with A: store, LiveKit, audio and what everyone was told agree."""
        t = await self.wait_transfer(state)
        self.assert_legal_path(t)
        call = await self.wait_call(CallStatus.active)
        assert call.agent_identity == self.a_id
        await self.wait_gone(t["consult_room"])
        await self.wait_identities(self.room, {self.caller_id, self.a_id, self.hold_id})
        assert await self.hold_flag() is False and await self.permissions(self.a_id) == (True, True)
        await self.caller.wait_hears_only({self.a_id}, timeout=15)
        await self.a.wait_hears(self.caller_id, timeout=15)
        await self.assert_told(self.a_lobby, state.value)
        await self.assert_told(self.b_lobby, state.value)
        await self.wait_caller_told("active", self.a_id)
        self.assert_only_true_states_told(t)

    async def assert_with_b(self) -> None:
        t = await self.wait_transfer(S.completed)
        self.assert_legal_path(t)
        call = await self.wait_call(CallStatus.active)
        assert call.agent_identity == self.b_id
        await self.wait_gone(t["consult_room"])
        await self.wait_identities(self.room, {self.caller_id, self.b_id, self.hold_id})
        assert await self.hold_flag() is False
        await self.caller.wait_hears_only({self.b_id}, timeout=15)
        assert self.b_call is not None
        await self.b_call.wait_hears(self.caller_id, timeout=15)
        await self.assert_told(self.a_lobby, "completed")
        await self.assert_told(self.b_lobby, "completed")
        await self.wait_caller_told("active", self.b_id)
        self.assert_only_true_states_told(t)

    async def assert_ended(self, state: TransferState | None = None) -> None:
        """The call is over: store says so, its rooms are gone, agents were told."""
        call = await self.wait_call(CallStatus.ended)
        await self.wait_gone(self.room)
        # The call's agent (A, or B after a hand-off) was in the room: disconnected with it, and told why
        # there unless the call was on hold (A may not listen then: the lobby's transfer message tells A).
        agent = {self.a_id: getattr(self, "a", None), self.b_id: self.b_call}.get(call.agent_identity or "")
        if agent is not None:
            await asyncio.wait_for(agent.disconnected.wait(), 10)
            said = [m["payload"]["status"] for m in agent.messages if m.get("type") == "call.status"]
            assert "ended" in said or said[-1:] == ["on_hold"], said
        if self.transfer is not None:
            t = await self.db_transfer()
            assert state is None or t["state"] == state.value, t["state"]
            self.assert_legal_path(t)
            await self.wait_gone(t["consult_room"])
            await self.assert_told(self.a_lobby, t["state"])
            await self.assert_told(self.b_lobby, t["state"])
            self.assert_only_true_states_told(t)
        assert call.status is CallStatus.ended

    def assert_nothing_repaired(self) -> None:
        """The actions themselves left media and state in agreement: the reconciler had nothing to do."""
        repairs = [r for r in self.orch.reconciler.repairs if self.call_id in r.room or self.call_id in r.what]
        if self.transfer is not None:
            repairs += [r for r in self.orch.reconciler.repairs if r.room == self.transfer["consult_room"]]
        assert not repairs, f"the reconciler had to repair: {repairs}"

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(p.disconnect(), 10) for p in self.peers), return_exceptions=True)
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes))


def briefing(tid: str) -> str:
    return briefing_identity(tid)


UTTERANCE = (np.sin(2 * np.pi * CALLER_HZ * np.arange(48000) / 48000) * 0.3 * 32767).astype("<i2").tobytes()


async def _keep_talking(peer: Peer) -> None:
    while True:
        await peer.say(UTTERANCE, 48000)
        await asyncio.sleep(1.0)


async def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    """Poll `predicate` (sync; run in a thread, it may ask a peer process) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(predicate)):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        await asyncio.sleep(every)
    return value
