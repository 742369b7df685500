"""A killed worker is known at once, a starved one is not taken for dead (issue 18's "kill -9 of the
worker: hold audio again within 5 s", without cutting healthy hold audio when a busy machine delays
the beats).

Peers: the control plane's real routes (`control_router`) under a real uvicorn on loopback, with a
recording sink in place of the orchestrator; the real `Heartbeat` in a child process of its own
(tests/support/beating_worker.py), killed with SIGKILL or stopped with SIGTERM. What the control
plane makes of late beats with the connection open: tests/unit/test_worker_heartbeat.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from control.control_routes import control_router
from control.livekit_server import dies_with_parent
from functions.media_protocol import (
    JobRef,
    WorkerGone,
    WorkerHeartbeat,
    internal_token,
)
from functions.settings import PROJECT_ROOT, load_settings
from tests.support.served import Served

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
SECRET = "s" * 32


class Sink:
    """What the orchestrator would be told, in order."""

    def __init__(self) -> None:
        self.reports: list = []

    async def on_livekit_event(self, event) -> None:
        pass

    async def on_media_report(self, report) -> None:
        self.reports.append((time.monotonic(), report))

    def first(self, kind: type, since: float = 0.0):
        return next(((t, r) for t, r in self.reports if isinstance(r, kind) and t >= since), None)


@pytest.fixture
def control_plane():
    sink = Sink()
    settings = load_settings(livekit_url="ws://127.0.0.1:9", livekit_api_key="key", livekit_api_secret=SECRET)
    app = FastAPI()
    app.include_router(control_router(lambda: settings, lambda: [sink]))
    with Served(app) as served:
        yield served.url, sink, served


@contextlib.contextmanager
def beating_worker(url: str, sink: Sink) -> Iterator[tuple[subprocess.Popen, str]]:
    """The worker's heartbeat in a child process, once it said its connection is open; killed after."""
    proc = subprocess.Popen(
        dies_with_parent([sys.executable, "-m", "tests.support.beating_worker", url, SECRET]),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        worker_id = proc.stdout.readline().strip()
        wait_until(lambda: held_beat(sink, worker_id), 20, "a beat saying the liveness connection is open")
        yield proc, worker_id
    finally:
        proc.kill()
        proc.wait(10)


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return found


def held_beat(sink: Sink, worker_id: str) -> bool:
    return any(isinstance(r, WorkerHeartbeat) and r.worker_id == worker_id and r.held for _t, r in sink.reports)


def test_a_killed_worker_is_gone_within_a_second(control_plane):
    url, sink, _served = control_plane
    with beating_worker(url, sink) as (proc, worker_id):
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        at, gone = wait_until(lambda: sink.first(WorkerGone), 5, "WorkerGone after kill -9")
    assert gone.worker_id == worker_id
    print(f"\n[liveness] worker gone {1000 * (at - killed):.0f} ms after its kill -9")
    assert at - killed < 1.0


def test_a_worker_that_stops_says_goodbye_first_and_is_not_gone(control_plane):
    url, sink, _served = control_plane
    with beating_worker(url, sink) as (proc, worker_id):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    bye = wait_until(
        lambda: next((r for _t, r in sink.reports if isinstance(r, WorkerHeartbeat) and r.stopping), None), 5, "goodbye"
    )
    assert bye.worker_id == worker_id and bye.jobs == [JobRef(room="call-c1", identity="media-c1")]
    time.sleep(0.5)  # a WorkerGone would have come by now: the connection ended with the process
    assert sink.first(WorkerGone) is None


def test_the_route_refuses_strangers(control_plane):
    url, sink, _served = control_plane
    r = httpx.post(url + "/internal/media/alive", params={"worker_id": "worker-0123456789ab"}, content=b".")
    assert r.status_code == 401
    r = httpx.post(
        url + "/internal/media/alive",
        params={"worker_id": "x"},
        content=b".",
        headers={"Authorization": "Bearer " + internal_token(SECRET)},
    )
    assert r.status_code == 422 and sink.reports == []
    # Nor may a worker declare another one gone through the reports route: that is the connection's to say.
    r = httpx.post(
        url + "/internal/media",
        json={"report": {"kind": "worker_gone", "worker_id": "worker-0123456789ab"}},
        headers={"Authorization": "Bearer " + internal_token(SECRET)},
    )
    assert r.status_code == 422 and sink.reports == []


def test_a_stopping_server_lets_go_of_the_connection_without_a_death(control_plane):
    """The server's stop is not held up by a body that never ends, and nobody is declared dead."""
    url, sink, served = control_plane
    with beating_worker(url, sink):
        started = time.monotonic()
        served.__exit__(None, None, None)
        took = time.monotonic() - started
    assert took < 2.0, f"the server took {took:.1f} s to stop"
    assert sink.first(WorkerGone) is None
