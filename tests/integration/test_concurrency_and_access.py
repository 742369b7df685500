"""Several calls at once never cross, tokens are enforced by the real server,
and a restarted orchestrator picks up an open transfer."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from livekit import rtc

from control.rooms import Rooms
from control.store import Store
from control.transfer import TransferOrchestrator
from functions.errors import Forbidden
from functions.models import SERVICE_PREFIXES, CallStatus, TransferState
from tests.integration.conftest import CallWorld, available_agent

pytestmark = pytest.mark.integration


async def test_two_concurrent_transfers_never_cross(orchestrator):
    w1 = await CallWorld(orchestrator, a="agent-a1", b="agent-b1").start()
    w2 = await CallWorld(orchestrator, a="agent-a2", b="agent-b2").start()
    try:
        t1, t2 = await asyncio.gather(w1.initiate(), w2.initiate())
        assert t1.consult_room != t2.consult_room
        await asyncio.gather(w1.join_consult(), w2.join_consult())
        # Each B hears its own A and its own briefing, nothing from the other call.
        for w, other in ((w1, w2), (w2, w1)):
            await w.b_consult.wait_hears(w.a_id)
            await w.b_consult.wait_hears(f"briefing-{w.transfer.transfer_id}", timeout=15)
            assert other.a_id not in w.b_consult.heard and other.b_id not in w.a_consult.heard
        # One completes, the other is declined, at the same time.
        await asyncio.gather(
            orchestrator.accept(t1.transfer_id, actor=w1.b_id),
            orchestrator.decline(t2.transfer_id, actor=w2.b_id),
        )
        await w1.b_joins_call()
        await w1.wait_state(TransferState.completed)
        await w1.caller.wait_hears(w1.b_id)
        await w2.caller.wait_hears(w2.a_id)
        await w1.caller.wait_not_hears(w1.hold_id)
        await w2.caller.wait_not_hears(w2.hold_id)
        await w1.caller.wait_hears_only({w1.b_id})
        await w2.caller.wait_hears_only({w2.a_id})
        assert await orchestrator.rooms.identities(w1.call.room) == {w1.call.caller_identity, w1.b_id, w1.hold_id}
        assert await orchestrator.rooms.identities(w2.call.room) == {w2.call.caller_identity, w2.a_id, w2.hold_id}
    finally:
        await w1.close()
        await w2.close()


async def test_caller_token_cannot_join_another_calls_room(orchestrator):
    own = await orchestrator.start_call("Ann", agent_identity="agent-a")
    other = await orchestrator.start_call("Bob", agent_identity="agent-b")
    url = orchestrator.settings.livekit_url
    token = orchestrator.caller_token(own.call_id, own.caller_identity).token
    # The orchestrator refuses to mint a token for someone else's call...
    with pytest.raises(Forbidden):
        orchestrator.caller_token(other.call_id, own.caller_identity)
    # ...the server lands the caller's token only in its own room...
    room = rtc.Room()
    await room.connect(url, token)
    assert room.name == own.room
    await room.disconnect()
    # ...and a token edited to name the other room is rejected by the server.
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["video"]["room"] = other.room
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = rtc.Room()
    with pytest.raises(rtc.ConnectError):
        await forged.connect(url, f"{header}.{forged_payload}.{sig}")
    # (The call's own media job may have joined by now: it is a service, not the forger.)
    people = {i for i in await orchestrator.rooms.identities(other.room) if not i.startswith(SERVICE_PREFIXES)}
    assert people == set()


async def test_agents_get_only_rooms_of_their_calls(orchestrator):
    call = await orchestrator.start_call("Ann", agent_identity="agent-a")
    with pytest.raises(Forbidden):
        orchestrator.agent_token("agent-z", call.room)
    b_lobby = await available_agent(orchestrator, "agent-b")
    t = await orchestrator.initiate(call.call_id, "agent-a", "agent-b")
    orchestrator.agent_token("agent-b", t.consult_room)  # B may join the consult
    with pytest.raises(Forbidden):
        orchestrator.agent_token("agent-z", t.consult_room)  # private to A and B
    with pytest.raises(Forbidden):
        orchestrator.agent_token("agent-b", call.room)  # not before accepting
    await orchestrator.cancel(t.transfer_id, actor="agent-a")
    with pytest.raises(Forbidden):
        orchestrator.agent_token("agent-b", t.consult_room)  # consult over
    await b_lobby.disconnect()


async def test_restarted_orchestrator_can_cancel_an_open_transfer(world, control_settings, control_hub):
    t = await world.initiate()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    # The control plane goes away without clean-up. The media plane does not: the caller keeps
    # hearing hold audio from the call job, never disconnected.
    old = world.orch
    control_hub.drop(old)
    await old.aclose()
    await asyncio.sleep(1.0)
    assert world.caller.hears(world.hold_id, within_s=0.5)
    assert not world.caller.disconnected.is_set()

    store = Store(control_settings.database_path)
    rooms = Rooms(control_settings)
    fresh = TransferOrchestrator(old.services, store, rooms)
    unregister = control_hub.add(lambda: [fresh])
    await fresh.start()
    try:
        assert [x.transfer_id for x in fresh.store.list_transfers(open_only=True)] == [t.transfer_id]
        assert fresh.store.list_calls()[0].status is CallStatus.on_hold
        await world.caller.wait_hears(world.hold_id, timeout=20)
        done = await fresh.cancel(t.transfer_id, actor=world.a_id)
        assert done.state is TransferState.cancelled
        await world.caller.wait_hears(world.a_id, timeout=10)
        await world.caller.wait_not_hears(world.hold_id)
    finally:
        unregister()
        await fresh.aclose()
        await rooms.aclose()
        store.close()
