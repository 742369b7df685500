"""`kill -9` of the app mid-consult (issue 18): the caller is never disconnected and the restarted
app, on the same DATA_DIR, completes the transfer.

Peers, all real and all started here: `python app.py` as its own process (as `make run` starts it)
with its embedded livekit-server and its media worker (both in their own sessions, so they outlive
the app), reached over HTTP on a free port; the caller, A and B are realtime-SDK peers in this
test process. Not the session's server or worker: what is tested is the app's own process layout.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from control.livekit_server import free_port
from functions.media_protocol import briefing_identity, media_identity
from tests.support.app_process import AppProcess, agent_token, headers, post
from tests.support.peer import Peer

pytestmark = pytest.mark.integration
A, B = "agent-a", "agent-b"


@pytest.mark.timeout(420)
async def test_app_killed_mid_consult_keeps_the_caller_and_its_successor_completes(tmp_path):
    app = AppProcess(tmp_path, free_port())
    peers: list[Peer] = []

    def peer(identity: str, hz: float | None) -> Peer:
        peers.append(p := Peer(identity, tone_hz=hz))
        return p

    async with httpx.AsyncClient(timeout=30) as client:
        try:
            app.start()
            await app.wait_ready(client)
            await app.wait_worker_registered()
            created = await post(
                client, app, "/api/rooms/create", {"caller_name": "Maria Lopez", "agent_identity": A}, A
            )
            call = created["call"]
            tok = await post(
                client,
                app,
                "/api/tokens",
                {
                    "role": "caller",
                    "call_id": call["call_id"],
                    "caller_identity": created["caller_identity"],
                    "ticket": created["caller_ticket"],
                },
                None,
            )
            url, hold_id = tok["url"], media_identity(call["call_id"])
            caller = await peer(created["caller_identity"], 440.0).connect(url, tok["token"])
            await peer(A, 660.0).connect(url, await agent_token(client, app, A, call["room"]))
            await peer(B, None).connect(url, await agent_token(client, app, B, "agents-lobby"))
            await post(client, app, "/api/agents/availability", {"available": True}, B)  # B takes calls
            await caller.wait_hears(A, timeout=20)

            t = await post(client, app, "/api/transfer/initiate", {"call_id": call["call_id"], "target": B}, A)
            await caller.wait_hears(hold_id, timeout=30)
            consult = t["consult_room"]
            await peer(A, 660.0).connect(url, await agent_token(client, app, A, consult))
            b = await peer(B, 880.0).connect(url, await agent_token(client, app, B, consult))
            await b.wait_hears(briefing_identity(t["transfer_id"]), timeout=60)  # mid-consult: B hears the brief
            server_pid, worker_pids = app.livekit_pid(), app.worker_pids()

            app.kill9()
            frames = caller.heard[hold_id].energetic_frames
            await asyncio.sleep(3.0)
            # 3 s of hold audio is 150 frames of 20 ms; most of them must have arrived.
            assert caller.heard[hold_id].energetic_frames > frames + 100, "hold audio stopped with the app"
            assert not caller.disconnected.is_set()

            app.start()
            await app.wait_ready(client)
            assert app.livekit_pid() == server_pid, "the restarted app started a new server"
            assert app.worker_pids() == worker_pids, "the restarted app did not adopt its worker"
            assert not caller.disconnected.is_set()

            done = await post(client, app, "/api/transfer/complete", {"transfer_id": t["transfer_id"]}, B)
            assert done["join"], done
            b_call = await peer(B, 880.0).connect(url, done["join"]["token"])
            deadline = time.monotonic() + 30
            while True:
                r = await client.get(f"{app.base}/api/transfer/{t['transfer_id']}", headers=headers(B))
                if r.json()["state"] == "completed":
                    break
                assert time.monotonic() < deadline, f"transfer not completed: {r.text}"
                await asyncio.sleep(0.2)
            await caller.wait_hears(B, timeout=15)
            await b_call.wait_hears(created["caller_identity"], timeout=15)
            await caller.wait_not_hears(A, timeout=15)
            assert not caller.disconnected.is_set()
        finally:
            await asyncio.gather(*(asyncio.wait_for(p.disconnect(), 10) for p in peers), return_exceptions=True)
            await asyncio.to_thread(app.stop)
            app.kill_leftovers()
