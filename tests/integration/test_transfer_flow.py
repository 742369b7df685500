"""Warm transfer end to end against the real livekit-server, with realtime-SDK
participants publishing distinct tones: caller 440 Hz, A 660 Hz, B 880 Hz.
"Hears" means decoded audio frames with energy from that participant, recently."""

from __future__ import annotations

import pytest

from functions.models import CallStatus, TransferState
from tests.integration.conftest import A_HZ, B_HZ, CALLER_HZ

pytestmark = pytest.mark.integration


async def test_complete_transfer_moves_caller_from_a_to_b(world):
    orch, caller = world.orch, world.caller
    caller_id = world.call.caller_identity

    # Before: caller and A hear each other, and it really is their tones.
    assert abs(caller.dominant_hz(world.a_id) - A_HZ) < 15
    assert abs(world.a.dominant_hz(caller_id) - CALLER_HZ) < 15

    t = await world.initiate()
    assert t.state is TransferState.consulting
    assert orch.store.get_call(world.call.call_id).status is CallStatus.on_hold

    # On hold: the caller hears the music and no longer hears A; A no longer hears the caller.
    await caller.wait_hears(world.hold_id)
    await caller.wait_not_hears(world.a_id)
    await world.a.wait_not_hears(caller_id)
    assert caller.audible_identities() == {world.hold_id}

    # B is told in the lobby, with the summary.
    offer = await world.b_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
    assert offer["v"] == 1 and offer["payload"]["summary"]["caller_name"] == "Maria Lopez"

    # Consult: A and B hear each other; B hears the spoken brief and gets the summary card.
    await world.join_consult()
    await world.a_consult.wait_hears(world.b_id)
    await world.b_consult.wait_hears(world.a_id)
    briefing_id = f"briefing-{t.transfer_id}"
    await world.b_consult.wait_hears(briefing_id, timeout=15)
    card = await world.b_consult.wait_message(lambda m: m["type"] == "transfer.summary")
    assert "Maria Lopez" in card["payload"]["summary"]["brief"]
    # The caller still only hears hold music during the whole consult.
    assert caller.audible_identities() == {world.hold_id}

    # Accept: B joins the caller's room; hold stops; A is removed; the consult room is gone.
    await orch.accept(t.transfer_id, actor=world.b_id)
    await world.b_joins_call()
    done = await world.wait_state(TransferState.completed)
    await caller.wait_hears(world.b_id)
    await world.b_call.wait_hears(caller_id)
    await caller.wait_not_hears(world.hold_id)
    assert abs(caller.dominant_hz(world.b_id) - B_HZ) < 15
    assert caller.audible_identities() == {world.b_id}

    call_members = await orch.rooms.identities(world.call.room)
    assert call_members == {caller_id, world.b_id}
    assert not await orch.rooms.room_exists(t.consult_room)
    await world.a.disconnected.wait()  # A's call-room connection was removed by the server
    assert orch.store.get_call(world.call.call_id).agent_identity == world.b_id
    assert [e.to_state for e in done.events] == [
        TransferState.consulting,
        TransferState.completing,
        TransferState.completed,
    ]
