"""The app's own processes under faults: a second app on the same DATA_DIR, and SIGTERM mid-consult.

- Two apps on one DATA_DIR each started a LiveKit server of their own and answered 404 for the other's
  calls (issue 15). The second now refuses at once, naming the first's pid and the directory, and
  starts nothing: the first app's server and calls are untouched.
- SIGTERM mid-consult: the app stops within 10 s, with its worker and its embedded server (nothing
  left running), and the open call ends with a reason its peers were told while they could still
  hear it: the caller's page gets `call.status: ended`, the agents' desks `transfer.failed`; the
  store says the same after the stop.

Peers: `python app.py` as its own process (tests/support/app_process.py) with its embedded
livekit-server and its media worker; the caller, A and B are realtime-SDK peers in this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from control.context import APP_STOPPED
from control.livekit_server import free_port
from control.store import Store
from control.transfer import LOBBY
from functions.media_protocol import media_identity
from tests.support.app_process import AppProcess, agent_token, make_available, post
from tests.support.peer import Peer

A, B = "agent-a", "agent-b"
STOP_BOUND_S = 10.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.mark.timeout(300)
async def test_a_second_app_is_refused_and_sigterm_mid_consult_stops_cleanly(tmp_path):
    app = AppProcess(tmp_path, free_port())
    peers: list[Peer] = []

    async def peer(identity: str, hz: float | None, token: str, *, listen: bool = True) -> Peer:
        peers.append(p := Peer(identity, tone_hz=hz, listen=listen))
        return await p.connect(url, token)

    async with httpx.AsyncClient(timeout=30) as client:
        try:
            app.start()
            await app.wait_ready(client)
            await app.wait_worker_registered()
            server_pid, worker_pids = app.livekit_pid(), app.worker_pids()

            second = AppProcess(tmp_path, free_port(), log_name="app-2.log").start()
            started = time.monotonic()
            code = await asyncio.to_thread(second.proc.wait, 60)  # type: ignore[union-attr]
            print(f"\n[two apps] the second exited with {code} after {time.monotonic() - started:.1f} s")
            assert code == 2, second.log()[-2000:]
            assert f"another control plane (process {app.proc.pid}) is already running on DATA_DIR={tmp_path}" in (
                second.log()
            ), second.log()[-2000:]
            assert app.livekit_pid() == server_pid and alive(server_pid), "the second app touched the server"
            assert (await client.get(f"{app.base}/api")).json()["status"] == "ok"

            created = await post(
                client, app, "/api/rooms/create", {"caller_name": "Maria Lopez", "agent_identity": A}, A
            )
            call = created["call"]
            ticket = {"call_id": call["call_id"], "caller_identity": created["caller_identity"]}
            tok = await post(
                client, app, "/api/tokens", {"role": "caller", **ticket, "ticket": created["caller_ticket"]}, None
            )
            url = tok["url"]
            caller = await peer(created["caller_identity"], 440.0, tok["token"])
            await peer(A, 660.0, await agent_token(client, app, A, call["room"]))
            a_lobby = await peer(A, None, await agent_token(client, app, A, LOBBY), listen=False)
            b_lobby = await peer(B, None, await agent_token(client, app, B, LOBBY), listen=False)
            await make_available(client, app, B)
            await caller.wait_hears(A, timeout=20)
            t = await post(client, app, "/api/transfer/initiate", {"call_id": call["call_id"], "target": B}, A)
            await peer(B, 880.0, await agent_token(client, app, B, t["consult_room"]), listen=False)
            await caller.wait_hears(media_identity(call["call_id"]), timeout=30)  # on hold, mid-consult

            started = time.monotonic()
            app.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            code = await asyncio.to_thread(app.proc.wait, STOP_BOUND_S + 10)  # type: ignore[union-attr]
            took = time.monotonic() - started
            print(f"[sigterm] the app stopped in {took:.2f} s (exit {code})")
            assert took < STOP_BOUND_S, f"stopping took {took:.1f} s"
            assert not alive(server_pid) and not any(alive(p) for p in worker_pids), "a child outlived the app"

            # Told while they could still hear it: the caller's page, and both agents' desks.
            said = [m["payload"]["status"] for m in caller.messages if m.get("type") == "call.status"]
            assert said[-1:] == ["ended"], said
            for desk in (a_lobby, b_lobby):
                done = [m for m in desk.messages if m.get("type") == "transfer.failed"]
                assert done and done[-1]["payload"]["transfer"]["reason"] == APP_STOPPED, desk.messages
            # And the store, read after the stop, says the same.
            store = Store(tmp_path / "warm_transfer.sqlite3")
            try:
                assert store.get_call(call["call_id"]).status.value == "ended"
                after = store.get_transfer(t["transfer_id"])
                assert after.state.value == "failed" and after.reason == APP_STOPPED
            finally:
                store.close()
        finally:
            await asyncio.gather(*(asyncio.wait_for(p.disconnect(), 10) for p in peers), return_exceptions=True)
            await asyncio.to_thread(app.stop)
            app.kill_leftovers()
