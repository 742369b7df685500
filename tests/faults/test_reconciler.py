"""Media follows state: what LiveKit has is broken behind the control plane's back, and the reconciler
(control/reconciler.py) puts it back within 2 s, measured from the break to RoomService showing it
repaired; the peers then hear what the state says they should.

The breaks are made with the server's own RoomService and tokens (what a failed RoomService call, a
lost or late webhook, or a second admin would leave): hold audio turned off on a call on hold, A given
its voice back during the hold and taken away after, an intruder and a stale B in the rooms while the
webhooks do not arrive, the call's room deleted under a live call, an ended call's room brought back.

Peers: the real app (ASGI, in process) on the session's livekit-server and media worker; the session's
control hub delivers its webhooks except while a case drops them; realtime-SDK peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from functions.media_protocol import CallRoomState
from functions.models import CallStatus, Role, TokenRequest, TransferState
from functions.tokens import mint_token
from tests.faults.conftest import A_HZ, Scene
from tests.support.peer import Peer, gaps

S = TransferState
REPAIR_S = 2.0  # the bound


async def repaired(predicate, what: str) -> float:
    """Seconds until `predicate()` (async) holds; fails past REPAIR_S (plus a poll)."""
    started = time.monotonic()
    while not await predicate():
        took = time.monotonic() - started
        assert took < REPAIR_S + 0.2, f"{what}: not repaired within {REPAIR_S} s"
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    print(f"[reconciler] {what}: repaired in {took:.2f} s")
    return took


async def test_media_broken_behind_the_control_planes_back_is_repaired_within_2s(scene: Scene, control_hub):
    orch, rooms = scene.orch, scene.orch.rooms
    handles: list = []

    @contextlib.contextmanager
    def webhooks_lost():
        """The session's webhooks stop reaching this app, then reach it again."""
        control_hub.drop(orch)
        try:
            yield
        finally:
            handles.append(control_hub.add(scene.app.state.ctx.sinks))

    try:
        await scene.start()
        assert (await scene.initiate()).status_code == 201
        await scene.join_consult()
        await scene.caller.wait_hears(scene.hold_id, timeout=20)

        # Hold audio stopped while the call is on hold (the room's metadata is what the call job follows).
        broken = time.monotonic()
        await rooms.set_metadata(scene.room, CallRoomState(hold=False).model_dump_json())
        await repaired(lambda: _is(scene.hold_flag(), True), "hold audio off on a call on hold")
        await scene.caller.wait_hears(scene.hold_id, timeout=5)
        await asyncio.sleep(0.5)
        silence = max(gaps(scene.caller.heard[scene.hold_id].energy_times, broken, time.monotonic()))
        print(f"[reconciler] the caller's hold audio was silent for {silence:.2f} s")
        # Short: the call job may not even have stopped the music before the repair (0.11 s measured
        # on a CI run, the pass came right after the break); what is asserted is that it came back fast.
        assert silence < REPAIR_S + 1.0, silence

        # A given back its voice and ears during the hold: the caller would hear A over the music.
        await rooms.set_permissions(scene.room, scene.a_id, publish=True, subscribe=True)
        await repaired(lambda: _is(scene.permissions(scene.a_id), (False, False)), "A unmuted during the hold")
        await scene.caller.wait_not_hears(scene.a_id, timeout=5)

        # Joins the state does not allow, while the webhooks that would remove them at once do not arrive.
        consult = scene.transfer["consult_room"]  # type: ignore[index]
        with webhooks_lost():
            intruder = await _join(scene, "intruder-1", scene.room)
            stranger = await _join(scene, "agent-z", consult)
            await repaired(lambda: _gone(scene, "intruder-1", scene.room), "an intruder in the caller's room")
            await repaired(lambda: _gone(scene, "agent-z", consult), "a stranger in the consult")
            await asyncio.wait_for(asyncio.gather(intruder.disconnected.wait(), stranger.disconnected.wait()), 5)

        assert (await scene.cancel()).status_code == 200
        await scene.assert_back_with_a(S.cancelled)
        # A muted although the call is A's again (a late webhook's mute landing after the cancel).
        await rooms.set_permissions(scene.room, scene.a_id, publish=False, subscribe=False)
        await repaired(lambda: _is(scene.permissions(scene.a_id), (True, True)), "A muted on an active call")
        await scene.caller.wait_hears(scene.a_id, timeout=10)  # A's page publishes again once allowed

        # The call's room deleted under a live call with a transfer open, its room_finished webhook lost:
        # the call ends, the transfer fails with the reason, and both desks are told.
        assert (await scene.initiate()).status_code == 201
        with webhooks_lost():
            await rooms.delete_room(scene.room)
            await repaired(lambda: _ended(scene), "a live call whose room is gone")
            t = await scene.wait_transfer(S.failed)
            assert t["reason"] == "the call's room is gone from the LiveKit server", t["reason"]
            await scene.assert_told(scene.a_lobby, "failed")
            await scene.assert_told(scene.b_lobby, "failed")
            await scene.wait_gone(t["consult_room"])

        # An ended call's room brought back (a recreate that raced the delete): deleted again.
        await rooms.create_room(scene.room, empty_timeout=120)
        await repaired(lambda: _not(rooms.room_exists(scene.room)), "an ended call's room that exists again")
        repairs = [r.what for r in orch.reconciler.repairs if scene.call_id in r.room or scene.call_id in r.what]
        print("[reconciler] repairs:", repairs)
    finally:
        for unregister in handles:
            unregister()


async def _is(value, want) -> bool:
    return (await value) == want


async def _not(value) -> bool:
    return not await value


async def _gone(scene: Scene, identity: str, room: str) -> bool:
    return identity not in await scene.orch.rooms.identities(room)


async def _ended(scene: Scene) -> bool:
    return scene.db_call().status is CallStatus.ended


async def _join(scene: Scene, identity: str, room: str) -> Peer:
    """A token the control plane never issued for this: minted with the server's keys, as a leaked key,
    a stale client or a second admin would have one."""
    token = mint_token(TokenRequest(identity=identity, role=Role.agent, room=room), scene.orch.settings).token
    # Joined, not publishing: being in the room is what the state does not allow. A publish after the
    # join would race the repair itself (a CI run saw the reconciler remove agent-z before its
    # microphone's publication was answered, so the publish never returned).
    return await scene.peer(identity, A_HZ, listen=False).connect(scene.url, token, publish=False)
