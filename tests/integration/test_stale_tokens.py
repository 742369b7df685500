"""A token outlives the state that issued it; the state decides who stays (issue 17, part 2).

Every test keeps a token minted while it was valid, lets the state move on, then joins with it,
and asserts what a user would notice: the rejoining peer hears nothing and nobody hears it, or it
is removed from the room within a second (the LiveKit webhook `participant_joined`), or the room
is gone and the join fails (rooms are never auto-created by a join).

Peers: the session's livekit-server (webhooks to the session's control hub) and media worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from livekit import rtc

from functions.models import TransferState
from tests.integration.conftest import A_HZ, B_HZ, CallWorld
from tests.support.peer import Peer

pytestmark = pytest.mark.integration

REMOVAL_S = 1.0  # the bound for removing a join the state does not allow
SLACK_S = 1.0  # a busy 2-core machine: the webhook's round trip on top


async def _join(world: CallWorld, identity: str, hz: float, token: str) -> tuple[Peer, float]:
    """Connect with `token` and start publishing, as a stale client would; (peer, when it connected).
    The publish runs on its own: a peer being removed never hears back about it, which is fine."""
    peer = world.peer(identity, hz)
    await peer.connect(world.orch.settings.livekit_url, token, publish=False)
    joined = time.monotonic()

    async def publish() -> None:
        with contextlib.suppress(Exception):
            await peer.publish()

    peer.spawn(publish())
    return peer, joined


async def _wait_removed(peer: Peer, joined: float) -> float:
    await asyncio.wait_for(peer.disconnected.wait(), REMOVAL_S + SLACK_S + 3)
    took = time.monotonic() - joined
    print(f"{peer.identity} removed {took:.3f}s after joining")  # for the record (-s)
    return took


async def test_a_rejoining_during_hold_with_a_token_from_before_hears_and_says_nothing(world):
    old = world.orch.agent_token(world.a_id, world.call.room).token  # full grants: minted before the hold
    await world.initiate()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    await world.a.disconnect()
    a_again, joined = await _join(world, world.a_id, A_HZ, old)
    await asyncio.sleep(REMOVAL_S + SLACK_S + 2.0)
    settled = joined + REMOVAL_S + SLACK_S
    assert a_again.first_energy_after(world.call.caller_identity, settled) is None, "A heard the caller on hold"
    assert world.caller.first_energy_after(world.a_id, settled) is None, "the caller heard A during the hold"
    assert world.caller.hears(world.hold_id), "the caller lost the hold audio"


async def test_a_rejoining_during_hold_with_the_held_token_is_silent_then_back_after_cancel(world):
    """What the UI asks for when A reloads during the hold (`while_held`): a token that can neither
    publish nor subscribe, so A is never heard over the hold audio, not even before the webhook;
    the rollback gives both back, and the caller hears A again."""
    t = await world.initiate()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    await world.a.disconnect()
    held = world.orch.agent_token(world.a_id, world.call.room, while_held=True).token
    a_again, joined = await _join(world, world.a_id, A_HZ, held)
    await asyncio.sleep(2.0)
    assert a_again.first_energy_after(world.call.caller_identity, joined) is None, "A heard the caller on hold"
    assert world.caller.first_energy_after(world.a_id, joined) is None, "the caller heard A during the hold"
    assert world.caller.hears(world.hold_id), "the caller lost the hold audio"
    await world.orch.cancel(t.transfer_id, actor=world.a_id)
    await world.caller.wait_hears(world.a_id, timeout=10)  # the peer re-publishes when allowed, as the UI does
    await a_again.wait_hears(world.call.caller_identity, timeout=10)


async def test_a_rejoining_after_the_hand_off_is_removed(world):
    old = world.orch.agent_token(world.a_id, world.call.room).token
    t = await world.initiate()
    await world.join_consult()
    await world.orch.accept(t.transfer_id, actor=world.b_id)
    await world.b_joins_call()
    await world.wait_state(TransferState.completed, timeout=20)
    a_again, joined = await _join(world, world.a_id, A_HZ, old)
    took = await _wait_removed(a_again, joined)
    assert took <= REMOVAL_S + SLACK_S, f"A stayed {took:.2f}s in a call that is B's now"
    await asyncio.sleep(0.5)
    assert world.caller.first_energy_after(world.a_id, joined + took) is None
    assert world.caller.hears(world.b_id) and not world.caller.disconnected.is_set()


async def test_b_with_its_call_token_after_a_failed_hand_off_is_removed(world):
    world.orch.settings = world.orch.settings.model_copy(update={"join_timeout_s": 2.0})
    t = await world.initiate()
    await world.join_consult()
    await world.orch.accept(t.transfer_id, actor=world.b_id)
    b_token = world.orch.agent_token(world.b_id, world.call.room).token  # what accept lets B have
    done = await world.wait_state(TransferState.failed, timeout=15)  # B never came: the caller is A's again
    assert "did not reach" in done.events[-1].detail.get("reason", "")
    b_late, joined = await _join(world, world.b_id, B_HZ, b_token)
    took = await _wait_removed(b_late, joined)
    assert took <= REMOVAL_S + SLACK_S, f"B stayed {took:.2f}s after the hand-off failed"
    await world.caller.wait_hears(world.a_id)
    assert world.caller.first_energy_after(world.b_id, joined + took) is None


async def test_an_ended_calls_caller_token_cannot_bring_the_room_back(world):
    token = world.orch.caller_token(world.call.call_id, world.call.caller_identity).token
    await world.orch.end_call(world.call.call_id, actor="agent-a", reason="done")
    await world.wait_room_gone(world.call.room)
    late = Peer(world.call.caller_identity, tone_hz=440)
    with pytest.raises(rtc.ConnectError):
        await late.connect(world.orch.settings.livekit_url, token)
    await late.disconnect()
    assert not await world.orch.rooms.room_exists(world.call.room)
