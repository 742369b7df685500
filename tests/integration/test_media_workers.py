"""The media plane in its own processes, on the real livekit-server: jobs land on every registered
worker, the control plane learns of a caller leaving from the server's signed webhook alone, forged webhooks
change nothing, a restarted control plane picks up a live consult, and the control plane never
creates an `rtc.Room`.

Peers: the session's livekit-server, its media worker (plus a second one started here), and the
control plane endpoint (tests/support/control_hub.py) that the server's webhooks reach.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api, rtc

from control.rooms import Rooms
from control.store import Store
from control.transfer import TransferOrchestrator
from functions.media_protocol import WEBHOOK_PATH, briefing_identity, media_identity
from functions.models import CallStatus, TransferState
from tests.conftest import WorkerProcess
from tests.integration.conftest import CallWorld, available_agent
from tests.support.peer import Peer, gaps

pytestmark = pytest.mark.integration


@pytest.fixture
async def second_worker(livekit_server, media_worker):
    worker = await asyncio.to_thread(lambda: WorkerProcess(livekit_server, name="worker-2").wait_registered())
    yield worker
    await asyncio.to_thread(worker.stop)


MAX_CALLS = 10  # the ten calls, at most: the server dispatches at random, weighted by load


async def test_jobs_land_on_both_workers(orchestrator, media_worker, second_worker):
    """Calls with a transfer each, one after another, until the server has given jobs to both workers
    (at most MAX_CALLS). livekit-server picks a worker at random, weighted by each one's last reported
    load (`selectWorkerWeightedByLoad`): a fixed four calls put all eight jobs on one worker in a CI
    run, as a fair coin would about once in 128 runs. Ten at once is bench/capacity.py's (30 peers and 20 job
    processes exceed this test's CPU): the calls here stop as soon as the spread is seen. Only the
    callers and B's lobby connections (a transfer's target must be online) are peers here, to keep
    this test's own process light."""
    url, callers, rooms = orchestrator.settings.livekit_url, [], set()
    on_first: set[str] = set()
    on_second: set[str] = set()
    try:
        for i in range(MAX_CALLS):
            call = await orchestrator.start_call("Maria Lopez", agent_identity=f"agent-a{i}")
            token = orchestrator.caller_token(call.call_id, call.caller_identity).token
            callers.append(caller := Peer(call.caller_identity, tone_hz=440))
            await caller.connect(url, token)
            callers.append(await available_agent(orchestrator, f"agent-b{i}"))  # a transfer needs its target online
            t = await orchestrator.initiate(call.call_id, f"agent-a{i}", f"agent-b{i}")
            await caller.wait_hears(media_identity(t.call_id), timeout=20)
            rooms |= {t.call_room, t.consult_room}
            # Each worker logs the rooms its jobs joined ("media job joined <room>").
            deadline = time.monotonic() + 20
            while True:
                logs = media_worker.log(), second_worker.log()
                on_first = {r for r in rooms if f"joined {r}" in logs[0]}
                on_second = {r for r in rooms if f"joined {r}" in logs[1]}
                if on_first | on_second == rooms or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert on_first | on_second == rooms
            if on_first and on_second:
                break
        assert on_first and on_second, (len(on_first), len(on_second))
    finally:
        for caller in callers:
            await caller.disconnect()


async def test_a_killed_worker_s_call_is_taken_over_by_the_other(orchestrator, media_worker, second_worker):
    """`kill -9` of the worker (and its job processes) whose job plays the caller's hold audio,
    mid-consult: the server says the job left, the control plane dispatches it again, the other
    worker takes it and the caller hears hold audio again within 5 s; the transfer then completes."""
    world = await CallWorld(orchestrator).start()
    room = world.call.room
    try:
        t = await world.initiate()
        await world.caller.wait_hears(world.hold_id, timeout=20)
        await world.join_consult()
        holder = next(w for w in (media_worker, second_worker) if f"joined {room}" in w.log())
        survivor = second_worker if holder is media_worker else media_worker
        redispatches = orchestrator.media.redispatches
        killed_at = time.monotonic()
        holder.kill()
        # The hold audio comes back from the survivor: the same identity, a new job.
        deadline = killed_at + 15
        while f"joined {room}" not in survivor.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert f"joined {room}" in survivor.log(), "the call job was not taken over by the other worker"
        await world.caller.wait_hears(world.hold_id, timeout=5)
        heard = world.caller.heard[world.hold_id].energy_times
        gap = max(gaps(heard, killed_at, time.monotonic()))
        print(f"hold audio gap after kill -9: {gap:.2f} s")
        assert gap <= 5.0, f"the caller heard no hold audio for {gap:.1f} s"
        assert orchestrator.media.redispatches > redispatches
        assert not world.caller.disconnected.is_set()
        # The consult goes on (its job may have been on the killed worker too): B takes the call.
        await orchestrator.accept(t.transfer_id, actor=world.b_id)
        await world.b_joins_call()
        await world.wait_state(TransferState.completed, timeout=20)
        await world.caller.wait_hears(world.b_id)
    finally:
        await world.close()
        if media_worker.proc.poll() is not None:  # the session's worker serves the tests after this one
            await asyncio.to_thread(media_worker.restart)


async def test_caller_leaving_ends_the_call_from_the_webhook_alone(world):
    """Live transcription off: nothing of ours reads the caller's audio, only the server's webhook says
    they left. (CALLER_GRACE_S, the time a reloading caller gets to come back, is 1 s here.)"""
    world.orch.settings = world.orch.settings.model_copy(update={"caller_grace_s": 1.0})
    await world.caller.disconnect()
    deadline = time.monotonic() + 3
    while world.orch.store.get_call(world.call.call_id).status is not CallStatus.ended:
        assert time.monotonic() < deadline, "the call did not end within 3 s of the caller leaving"
        await asyncio.sleep(0.05)


async def test_unsigned_and_forged_webhooks_are_refused(world, control_hub, livekit_server):
    """A 'participant_left' for the caller, unsigned or signed with another key: 401, the call goes on."""
    event = api.WebhookEvent(
        event="participant_left",
        room=api.Room(name=world.call.room),
        participant=api.ParticipantInfo(identity=world.call.caller_identity),
    )
    body = MessageToJson(event)
    forged = api.AccessToken(livekit_server.api_key, "not-the-secret").with_sha256("x" * 44).to_jwt()
    async with httpx.AsyncClient(base_url=control_hub.url, timeout=5) as client:
        for headers in ({}, {"Authorization": forged}, {"Authorization": "garbage"}):
            r = await client.post(
                WEBHOOK_PATH, content=body, headers={"Content-Type": "application/webhook+json", **headers}
            )
            assert r.status_code == 401, r.text
    await asyncio.sleep(0.5)
    assert world.orch.store.get_call(world.call.call_id).status is CallStatus.active
    assert not world.caller.disconnected.is_set()


async def test_control_plane_restart_mid_consult_keeps_the_caller(world, control_settings, control_hub):
    """The control plane dies (no clean-up) mid-consult; the media plane keeps the caller on hold;
    a new control plane on the same database completes the transfer."""
    t = await world.initiate()
    await world.caller.wait_hears(world.hold_id, timeout=20)
    await world.join_consult()
    old = world.orch
    control_hub.drop(old)
    await old.aclose()
    frames_before = world.caller.heard[world.hold_id].energetic_frames
    await asyncio.sleep(2.0)
    assert world.caller.heard[world.hold_id].energetic_frames > frames_before + 50  # hold audio kept flowing
    store, rooms = Store(control_settings.database_path), Rooms(control_settings)
    fresh = TransferOrchestrator(old.services, store, rooms)
    unregister = control_hub.add(lambda: [fresh])
    await fresh.start()
    try:
        world.orch = fresh
        await fresh.accept(t.transfer_id, actor=world.b_id)
        await world.b_joins_call()
        await world.wait_state(TransferState.completed, timeout=20)
        await world.caller.wait_hears(world.b_id)
        assert not world.caller.disconnected.is_set()
    finally:
        unregister()
        await fresh.aclose()
        await rooms.aclose()
        store.close()


async def test_the_control_plane_never_creates_a_room(orchestrator, monkeypatch):
    """A full transfer with peers in another process would be ideal; here the peers share the
    test's process, so `rtc.Room` is counted only while the orchestrator itself runs."""
    created: list[str] = []
    real_init = rtc.Room.__init__

    def counting_init(self, *args, **kwargs):
        import traceback

        stack = "".join(traceback.format_stack(limit=12))
        if "tests/support/peer.py" not in stack:
            created.append(stack)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(rtc.Room, "__init__", counting_init)
    world = await CallWorld(orchestrator).start()
    try:
        t = await world.initiate()
        await world.join_consult()
        await world.b_consult.wait_hears(briefing_identity(t.transfer_id), timeout=20)
        await orchestrator.accept(t.transfer_id, actor=world.b_id)
        await world.b_joins_call()
        await world.wait_state(TransferState.completed, timeout=20)
    finally:
        await world.close()
    assert created == [], created[0] if created else ""
