"""`python app.py` as its own process, as `make run` starts it (its embedded livekit-server and media
workers in their own sessions), reached over HTTP on a free port: for tests of the app's process
layout (a crash, a second app on the same DATA_DIR, SIGTERM). Every setting is explicit."""

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

from functions.settings import PROJECT_ROOT, Settings

API_KEY = "crash-test-api-key-0123456789"
APP_READY_S = 120  # Gradio build, livekit-server start, on a busy 2-core machine


def headers(identity: str) -> dict[str, str]:
    return {"X-API-Key": API_KEY, "X-Agent-Identity": identity}


class AppProcess:
    """`python app.py` on `data_dir`, every setting explicit (a developer's `.env` or environment
    must not leak in: the app runs in `data_dir`, where there is no `.env`)."""

    def __init__(self, data_dir: Path, port: int, *, log_name: str = "app.log") -> None:
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
        self.log_path = data_dir / log_name
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


async def make_available(client, app, agent: str, timeout: float = 10.0) -> None:
    """The agent takes calls (its lobby peer must be connected): a transfer goes only to an available
    agent. Asked until the app has seen the lobby connection (its webhook or the next RoomService sync)."""
    deadline = time.monotonic() + timeout
    while (view := await post(client, app, "/api/agents/availability", {"available": True}, agent))["state"] != (
        "available"
    ):
        assert time.monotonic() < deadline, f"{agent} not available within {timeout:g}s: {view}"
        await asyncio.sleep(0.1)
