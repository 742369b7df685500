"""Stopping a worker, or the control plane, with consults open is bounded, and loses no caller.

Peers: the session's livekit-server and media worker, a second worker started here (the one that
is stopped), the control-plane endpoint the jobs report to. Six consults (twelve jobs) here: this
process is the control plane and every caller, and ten consults starting at once saturated it
(measured); fifty are bench/test_capacity.py's.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from functions.media_protocol import briefing_identity, media_identity
from tests.conftest import WorkerProcess
from tests.integration.conftest import available_agent
from tests.support.peer import Peer

pytestmark = pytest.mark.integration
CONSULTS = 6
STOP_BOUND_S = 10.0


async def test_stopping_a_worker_and_the_control_plane_with_open_consults(orchestrator, media_worker, livekit_server):
    second = await asyncio.to_thread(lambda: WorkerProcess(livekit_server, name="worker-stop").wait_registered())
    url, callers, transfers, targets = orchestrator.settings.livekit_url, [], [], []
    try:
        # Presence: a transfer goes only to an agent signed in with a live lobby connection.
        targets = [await available_agent(orchestrator, f"agent-t{i}") for i in range(CONSULTS)]
        for i in range(CONSULTS):
            call = await orchestrator.start_call("Maria Lopez", agent_identity=f"agent-s{i}")
            callers.append(caller := Peer(call.caller_identity))
            # Listening only: what is measured is the hold audio they hear, and ten publishing peers
            # in this process would load it more than the thing measured.
            token = orchestrator.caller_token(call.call_id, call.caller_identity).token
            await caller.connect(url, token, publish=False)
        calls = list(orchestrator.store.list_calls())
        transfers = await asyncio.gather(
            *(orchestrator.initiate(c.call_id, c.agent_identity, f"agent-t{i}") for i, c in enumerate(calls))
        )
        jobs = {(t.call_room, media_identity(t.call_id)) for t in transfers}
        jobs |= {(t.consult_room, briefing_identity(t.transfer_id)) for t in transfers}
        deadline = time.monotonic() + 60
        while not all(f"joined {room}" in media_worker.log() + second.log() for room, _ in jobs):
            missing = [r for r, _ in jobs if f"joined {r}" not in media_worker.log() + second.log()]
            assert time.monotonic() < deadline, f"not every job joined within 60 s: {missing}"
            await asyncio.sleep(0.2)
        on_second = sum(f"joined {room}" in second.log() for room, _ in jobs)
        assert on_second > 0, "no job landed on the worker to be stopped"

        started = time.monotonic()
        second.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.proc.wait, STOP_BOUND_S + 5)
        took = time.monotonic() - started
        print(f"worker with {on_second} jobs stopped in {took:.2f} s")
        assert took < STOP_BOUND_S

        # Its jobs are back on the other worker: every caller hears hold audio, nobody was dropped.
        for caller, t in zip(callers, transfers, strict=True):
            await caller.wait_hears(media_identity(t.call_id), timeout=30)
            assert not caller.disconnected.is_set()

        started = time.monotonic()
        await asyncio.wait_for(orchestrator.aclose(), STOP_BOUND_S)
        print(f"control plane with {CONSULTS} open consults stopped in {time.monotonic() - started:.3f} s")
    finally:
        await asyncio.gather(*(c.disconnect() for c in callers + targets))
        await asyncio.to_thread(second.stop)
