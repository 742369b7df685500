"""Warm transfer end to end against the real livekit-server, with realtime-SDK
participants publishing distinct tones: caller 440 Hz, A 660 Hz, B 880 Hz.
"Hears" means decoded audio frames with energy from that participant, recently."""

from __future__ import annotations

import asyncio
import time

import pytest

from functions.media_protocol import briefing_identity
from functions.models import CallStatus, TransferState
from tests.integration.conftest import A_HZ, B_HZ, CALLER_HZ
from tests.support.media_plane import wait_for

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
    await caller.wait_hears(world.hold_id, timeout=20)
    await caller.wait_not_hears(world.a_id)
    await world.a.wait_not_hears(caller_id)
    await caller.wait_hears_only({world.hold_id})
    on_hold_since = time.monotonic()

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
    # The caller heard nothing of A or B during the whole consult, only the music.
    assert caller.first_energy_after(world.a_id, on_hold_since) is None
    assert caller.first_energy_after(world.b_id, on_hold_since) is None
    await caller.wait_hears_only({world.hold_id})

    # Accept: B joins the caller's room; hold stops; A is removed; the consult room is gone.
    await orch.accept(t.transfer_id, actor=world.b_id)
    await world.b_joins_call()
    done = await world.wait_state(TransferState.completed)
    await caller.wait_hears(world.b_id)
    await world.b_call.wait_hears(caller_id)
    await caller.wait_not_hears(world.hold_id)
    assert abs(caller.dominant_hz(world.b_id) - B_HZ) < 15
    await caller.wait_hears_only({world.b_id})

    call_members = await orch.rooms.identities(world.call.room)
    assert call_members == {caller_id, world.b_id, world.hold_id}  # the call job stays with the call
    assert not await orch.rooms.room_exists(t.consult_room)
    await world.a.disconnected.wait()  # A's call-room connection was removed by the server
    assert orch.store.get_call(world.call.call_id).agent_identity == world.b_id
    assert [e.to_state for e in done.events] == [
        TransferState.consulting,
        TransferState.completing,
        TransferState.completed,
    ]


async def _assert_caller_back_with_a(world, transfer) -> None:
    """After a rollback: consult gone, no hold music, caller and A hear each other again."""
    caller_id = world.call.caller_identity
    await world.caller.wait_hears(world.a_id, timeout=10)
    await world.a.wait_hears(caller_id, timeout=10)
    await world.caller.wait_not_hears(world.hold_id)
    await world.caller.wait_hears_only({world.a_id})
    await world.wait_room_gone(transfer.consult_room)
    assert await world.orch.rooms.identities(world.call.room) == {caller_id, world.a_id, world.hold_id}
    call = world.orch.store.get_call(world.call.call_id)
    assert call.status is CallStatus.active and call.agent_identity == world.a_id


async def test_decline_returns_caller_to_a(world):
    t = await world.initiate()
    await world.join_consult()
    await world.b_consult.wait_hears(f"briefing-{t.transfer_id}", timeout=15)
    done = await world.orch.decline(t.transfer_id, actor=world.b_id, reason="not my queue")
    assert done.state is TransferState.declined and done.reason == "not my queue"
    await _assert_caller_back_with_a(world, t)
    # A and B are both told, in the consult and in the lobby.
    msg = await world.b_lobby.wait_message(lambda m: m["type"] == "transfer.declined")
    assert msg["payload"]["event"]["actor"] == world.b_id


async def test_cancel_by_a_returns_caller_to_a(world):
    t = await world.initiate()
    await world.join_consult()
    await world.a_consult.wait_hears(world.b_id)
    done = await world.orch.cancel(t.transfer_id, actor=world.a_id)
    assert done.state is TransferState.cancelled
    await _assert_caller_back_with_a(world, t)


async def test_nobody_joins_the_consult_times_out(world):
    world.orch.settings = world.orch.settings.model_copy(update={"ring_timeout_s": 1.5})
    t = await world.initiate()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    done = await world.wait_state(TransferState.timed_out, timeout=10)
    assert done.reason == "target did not join the consult" and done.events[-1].actor == "timer"
    await _assert_caller_back_with_a(world, t)


async def test_b_leaving_the_consult_returns_caller_to_a(world):
    """B gone for good: the caller is back with A once TARGET_GRACE_S (the time a reloading B gets to
    come back) is over, and not much later."""
    grace = world.orch.settings.target_grace_s
    t = await world.initiate()
    await world.join_consult()
    await world.b_consult.wait_hears(world.a_id)
    await world.b_consult.disconnect()
    left = time.monotonic()
    done = await world.wait_state(TransferState.target_left, timeout=grace + 10)
    took = time.monotonic() - left
    assert grace - 0.5 <= took <= grace + 3, f"rolled back {took:.1f} s after B left (grace {grace} s)"
    assert done.events[-1].actor == world.b_id
    await _assert_caller_back_with_a(world, t)


async def test_b_back_in_the_consult_within_the_grace_keeps_the_transfer(world):
    """What a reload of B's page does to LiveKit: B leaves the consult and joins it again a few seconds
    later. The transfer goes on (the caller still on hold), and B can accept."""
    grace = world.orch.settings.target_grace_s
    t = await world.initiate()
    await world.join_consult()
    await world.b_consult.wait_hears(world.a_id)
    await world.b_consult.disconnect()
    await asyncio.sleep(grace / 2)
    url = world.orch.settings.livekit_url
    token = world.orch.agent_token(world.b_id, t.consult_room).token
    world.b_consult = await world.peer(world.b_id, B_HZ).connect(url, token)
    await world.b_consult.wait_hears(world.a_id)
    await asyncio.sleep(grace / 2 + 2)  # past the end of the grace
    assert world.orch.get_transfer(t.transfer_id).state is TransferState.consulting
    await world.caller.wait_hears_only({world.hold_id})
    await world.orch.accept(t.transfer_id, actor=world.b_id)
    await world.b_joins_call()
    await world.wait_state(TransferState.completed)


async def test_caller_hanging_up_during_consult_ends_transfer_and_tells_a_and_b(world):
    t = await world.initiate()
    await world.join_consult()
    await world.b_consult.wait_hears(world.a_id)
    await world.caller.disconnect()
    done = await world.wait_state(TransferState.caller_left)
    assert done.reason == "caller hung up"
    for peer in (world.a_consult, world.b_consult):
        await peer.wait_message(lambda m: m["type"] == "transfer.caller_left")
    assert world.orch.store.get_call(world.call.call_id).status is CallStatus.ended
    await world.wait_room_gone(t.consult_room)
    await world.wait_room_gone(world.call.room)


async def _publishes(world, room: str, identity: str) -> bool:
    """The LiveKit server lists an audio track of `identity` in `room`."""
    return any(p.identity == identity and p.tracks for p in await world.orch.rooms.list_participants(room))


async def test_service_tracks_are_in_their_rooms_only_while_they_play(world):
    """A published track costs its job the encoder even when silent (media.track): the hold track is
    in the call room during the hold only, the briefing track in the consult from B's arrival."""
    room, hold = world.call.room, world.hold_id
    assert await world.orch.media.wait_joined(hold, 20)  # the call job is there (it may join after the peers)
    assert hold in await world.orch.rooms.identities(room)
    assert not await _publishes(world, room, hold)
    t = await world.initiate()
    await world.caller.wait_hears(hold, timeout=20)
    assert await _publishes(world, room, hold)
    briefing = briefing_identity(t.transfer_id)
    assert await world.orch.media.wait_joined(briefing, 20)
    assert not await _publishes(world, t.consult_room, briefing)  # nobody to brief yet
    await world.join_consult()
    await world.b_consult.wait_hears(briefing, timeout=15)
    await world.orch.cancel(t.transfer_id, actor=world.a_id)
    await _assert_caller_back_with_a(world, t)
    await wait_for(lambda: _unpublished(world, room, hold), 10, "the hold track unpublished")


async def _unpublished(world, room: str, identity: str) -> bool:
    return not await _publishes(world, room, identity)


async def test_illegal_actions_change_nothing(world):
    t = await world.initiate()
    from functions.errors import Conflict, Forbidden, IllegalTransition

    with pytest.raises(Forbidden):
        await world.orch.decline(t.transfer_id, actor=world.a_id)  # only B declines
    with pytest.raises(Forbidden):
        await world.orch.cancel(t.transfer_id, actor=world.b_id)  # only A cancels
    with pytest.raises(Conflict, match="already has an open transfer"):
        await world.orch.initiate(world.call.call_id, world.a_id, "agent-c")
    await world.orch.cancel(t.transfer_id, actor=world.a_id)
    with pytest.raises(IllegalTransition, match="cannot go from 'cancelled' to 'completing'"):
        await world.orch.accept(t.transfer_id, actor=world.b_id)
    assert [e.to_state for e in world.orch.get_transfer(t.transfer_id).events] == [
        TransferState.consulting,
        TransferState.cancelled,
    ]
