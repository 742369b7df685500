"""Shared fixtures for the test session, all real: one livekit-server (free ports, random keys)
whose webhooks go to the session's control-plane endpoint (`ControlHub` under uvicorn), one media
worker process (`worker.py`, livekit-agents) registered with it, settings pointed at all three,
and a fresh SQLite store per test. Every start and stop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import uvicorn

from control.livekit_server import EmbeddedLiveKit, dies_with_parent, free_port
from functions.media_protocol import WEBHOOK_PATH
from functions.settings import PROJECT_ROOT, Settings, load_settings
from media.priority import drop_realtime_scheduling
from tests.support.control_hub import ControlHub

ARTIFACTS = PROJECT_ROOT / "artifacts"
WORKER_READY_S = 120  # Whisper + piper load on a busy 2-core machine


@pytest.fixture(scope="session")
def control_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def livekit_server(control_port):
    webhook = f"http://127.0.0.1:{control_port}{WEBHOOK_PATH}"
    with EmbeddedLiveKit(load_settings(livekit_port=0), webhook_url=webhook) as server:
        yield server
        ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the server's log, for a failed run
        with contextlib.suppress(OSError):
            shutil.copy(server.log_path, ARTIFACTS / "livekit-server.log")


@pytest.fixture(scope="session")
async def control_hub(livekit_server, control_port):
    hub = ControlHub(lambda: livekit_server.settings_for(load_settings()))
    config = uvicorn.Config(hub.app, host="127.0.0.1", port=control_port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    hub.app.state.stopping = lambda: server.should_exit  # workers' liveness connections let go at the end
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError(f"the control hub did not start on {control_port}")
        await asyncio.sleep(0.02)
    hub.url = f"http://127.0.0.1:{control_port}"
    yield hub
    server.should_exit = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 5)


class WorkerProcess:
    """`python worker.py --embedded <the session server's state>` with its log kept for failures."""

    def __init__(
        self,
        livekit_server: EmbeddedLiveKit,
        name: str = "worker",
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`command` replaces `python worker.py` (e.g. tests/support/recording_worker.py); `env` is the
        whole environment of the process (default: this one's)."""
        self.livekit_server = livekit_server
        self.command = command or [sys.executable, str(PROJECT_ROOT / "worker.py")]
        self.env = env
        self.log_path = livekit_server.dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = self.spawn()

    def spawn(self) -> subprocess.Popen:
        self._log.flush()
        self._since = self.log_path.stat().st_size  # where this process's log starts (the file is appended to)
        return subprocess.Popen(
            dies_with_parent([*self.command, "--embedded", str(self.livekit_server.dir)]),  # no orphan workers
            stdout=self._log,
            env=self.env,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """What a crashed machine does: SIGKILL to the worker and its job processes (its session), no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def restart(self) -> WorkerProcess:
        """After `kill`: the same worker again (its log continues), registered."""
        self._log.write(b"\n--- restarted ---\n")
        self.proc = self.spawn()
        return self.wait_registered()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_registered(self, timeout: float = WORKER_READY_S) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while b"registered worker" not in self.log_path.read_bytes()[self._since :]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the media worker did not register:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Bounded (SIGTERM, then SIGKILL); the log is kept under artifacts/ for a failed run."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.log_path, ARTIFACTS / self.log_path.name)


@pytest.fixture(scope="session")
def media_worker(livekit_server):
    worker = WorkerProcess(livekit_server).wait_registered()
    yield worker
    worker.stop()


@pytest.fixture
def settings(livekit_server, tmp_path) -> Settings:
    """Settings of a control plane that uses the session's server and worker (WORKERS=0 here)."""
    return livekit_server.settings_for(
        load_settings(
            data_dir=tmp_path,
            ring_timeout_s=20,
            accept_timeout_s=60,
            join_timeout_s=10,
            openai_api_key="",
            openai_base_url="",
            twilio_account_sid="",
            live_transcription=False,  # on in the tests of live transcription, which need Whisper's CPU
            workers=0,
            wrap_up_s=0,  # agents are free again at once (the presence tests set their own)
        )
    )


@pytest.fixture
def control_settings(settings, control_hub, media_worker) -> Settings:
    """`settings` with the media plane behind it: jobs report to the session's hub."""
    return settings.model_copy(update={"control_url": control_hub.url})


def pytest_configure(config):
    # As root (CI), the realtime-SDK peers' and Chromium's audio threads would take real-time
    # priority and run ahead of the livekit-server, workers and control plane under test, which on 2
    # cores turned busy moments into seconds of stall. Every process the session starts inherits it.
    drop_realtime_scheduling()


def pytest_unconfigure(config):
    # After the last test the event loop is closed, but the SDK's FFI thread may still deliver
    # events for rooms torn down at exit; each would log "error putting to queue". The test
    # results are already printed; keep them the last thing in the output.
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
