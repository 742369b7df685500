"""`kill -9` of the app mid-consult (issue 18): the caller is never disconnected and the restarted
app, on the same DATA_DIR, completes the transfer.

Peers, all real and all started here: `python app.py` as its own process (as `make run` starts it)
with its embedded livekit-server and its media worker (both in their own sessions, so they outlive
the app), reached over HTTP on a free port; the caller, A and B are realtime-SDK peers in this
test process. Not the session's server or worker: what is tested is the app's own process layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from functions.livekit_server import free_port
from functions.media_protocol import briefing_identity, media_identity
from functions.settings import PROJECT_ROOT, Settings
from tests.support.peer import Peer

pytestmark = pytest.mark.integration
API_KEY = "crash-test-api-key-0123456789"
A, B = "agent-a", "agent-b"
APP_READY_S = 120  # Gradio build, livekit-server start, on a busy 2-core machine


def headers(identity: str) -> dict[str, str]:
    return {"X-API-Key": API_KEY, "X-Agent-Identity": identity}


class AppProcess:
    """`python app.py` on `data_dir`, every setting explicit (a developer's `.env` or environment
    must not leak in: the app runs in `data_dir`, where there is no `.env`)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        ours = {name.upper() for name in Settings.model_fields}
        self.env = {k: v for k, v in os.environ.items() if k.upper() not in ours}
        self.env |= {
            "DATA_DIR": str(data_dir),
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(port),
            "LIVEKIT_PORT": "0",
            "WORKERS": "1",
            "API_KEY": API_KEY,
            "LIVE_TRANSCRIPTION": "false",  # hold audio and the brief are what this test is about
            "FUNCTIONS_BACKEND": "local",
        }
        self.log_path = data_dir / "app.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> AppProcess:
        with self.log_path.open("ab") as log:
            log.write(b"\n--- start ---\n")
            self.proc = subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "app.py")],
                cwd=self.data_dir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + APP_READY_S
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, f"the app exited:\n{self.log()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(f"{self.base}/api", timeout=2)
                if r.status_code == 200 and r.json()["status"] == "ok":
                    return
            await asyncio.sleep(0.3)
        raise AssertionError(f"the app was not ready within {APP_READY_S} s:\n{self.log()[-3000:]}")

    async def wait_worker_registered(self) -> None:
        """The app answers before its worker has registered with LiveKit; a call started then gets
        its media only at a later re-dispatch (tests/unit/test_redispatch.py), so this test waits."""
        log = self.data_dir / "workers" / "worker-0.log"
        deadline = time.monotonic() + APP_READY_S
        while not (log.exists() and b"registered worker" in log.read_bytes()):
            assert time.monotonic() < deadline, f"the worker did not register:\n{self.log()[-3000:]}"
            await asyncio.sleep(0.3)

    def kill9(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)  # the app process alone: no clean-up, no goodbye
        self.proc.wait(5)

    def stop(self) -> None:
        """Bounded: SIGTERM (the app stops its worker and server), SIGKILL after 20 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def livekit_pid(self) -> int:
        return int(json.loads((self.data_dir / "livekit" / "server.json").read_text())["pid"])

    def worker_pids(self) -> list[int]:
        return [int(p.read_text()) for p in (self.data_dir / "workers").glob("worker-*.pid")]

    def kill_leftovers(self) -> None:
        """Whatever a failed test left running (server, workers) goes, so no test leaks processes."""
        pids = [*self.worker_pids()]
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids.append(self.livekit_pid())
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


async def post(client: httpx.AsyncClient, app: AppProcess, path: str, body: dict, agent: str | None) -> dict:
    r = await client.post(f"{app.base}{path}", json=body, headers=headers(agent) if agent else {})
    assert r.status_code in (200, 201), f"{path}: {r.status_code} {r.text}"
    return r.json()


async def agent_token(client, app, agent: str, room: str) -> str:
    return (await post(client, app, "/api/tokens", {"role": "agent", "room": room, "name": agent}, agent))["token"]


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
