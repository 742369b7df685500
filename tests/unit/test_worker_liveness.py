"""A killed worker is known at once, a starved one is not taken for dead (issue 18's "kill -9 of the
worker: hold audio again within 5 s", without cutting healthy hold audio when a busy machine delays
the beats).

Peers: the control plane's real routes (`control_router`) under a real uvicorn on loopback, with a
recording sink in place of the orchestrator; the real `Heartbeat` in a child process of its own
(tests/support/beating_worker.py), killed with SIGKILL or stopped with SIGTERM. And `MediaControl`
fed beats with a moved clock, for the bars."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fastapi import FastAPI

from control import media_control
from control.control_routes import control_router
from control.livekit_server import dies_with_parent
from control.media_control import MediaControl
from functions.media_protocol import (
    WORKER_SILENT_S,
    WORKER_STUCK_S,
    JobRef,
    WorkerGone,
    WorkerHeartbeat,
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


def start_worker(url: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        dies_with_parent([sys.executable, "-m", "tests.support.beating_worker", url, SECRET]),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return found


def held_beat(sink: Sink, worker_id: str):
    return sink.first(WorkerHeartbeat) and any(
        isinstance(r, WorkerHeartbeat) and r.worker_id == worker_id and r.held for _t, r in sink.reports
    )


def test_a_killed_worker_is_gone_within_a_second(control_plane):
    url, sink, _served = control_plane
    proc, worker_id = start_worker(url)
    try:
        wait_until(lambda: held_beat(sink, worker_id), 20, "a beat saying the liveness connection is open")
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        at, gone = wait_until(lambda: sink.first(WorkerGone), 5, "WorkerGone after kill -9")
    finally:
        proc.kill()
        proc.wait(10)
    assert gone.worker_id == worker_id
    print(f"\n[liveness] worker gone {1000 * (at - killed):.0f} ms after its kill -9")
    assert at - killed < 1.0


def test_a_worker_that_stops_says_goodbye_first_and_is_not_gone(control_plane):
    url, sink, _served = control_plane
    proc, worker_id = start_worker(url)
    try:
        wait_until(lambda: held_beat(sink, worker_id), 20, "a beat saying the liveness connection is open")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    bye = wait_until(
        lambda: next((r for _t, r in sink.reports if isinstance(r, WorkerHeartbeat) and r.stopping), None), 5, "goodbye"
    )
    assert bye.worker_id == worker_id and bye.jobs == [JobRef(room="call-c1", identity="media-c1")]
    time.sleep(0.5)  # a WorkerGone would have come by now: the connection ended with the process
    assert sink.first(WorkerGone) is None


# --- the bars -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(media_control.time, "monotonic", c)
    return c


def beat(worker: str, *, held: bool, stopping: bool = False) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker_id=worker, jobs=[JobRef(room="call-a", identity="media-a")], held=held, stopping=stopping
    )


def test_late_beats_of_a_worker_holding_its_connection_are_not_a_death(clock):
    control = MediaControl(load_settings(), rooms=None)
    control.on_heartbeat(beat("w1", held=True))
    clock.now += WORKER_SILENT_S * 2  # starved: no beat for 5 s
    assert control.silent_workers() == []
    control.on_heartbeat(beat("w1", held=True))  # it was only late
    clock.now += WORKER_STUCK_S + 0.1  # but a worker that never beats again is stuck: its jobs are lost
    assert control.silent_workers() == [JobRef(room="call-a", identity="media-a")]


def test_without_its_connection_the_short_bar_holds(clock):
    control = MediaControl(load_settings(), rooms=None)
    control.on_heartbeat(beat("w1", held=False))
    clock.now += WORKER_SILENT_S + 0.1
    assert control.silent_workers() == [JobRef(room="call-a", identity="media-a")]


def test_gone_loses_the_jobs_at_once_and_once(clock):
    control = MediaControl(load_settings(), rooms=None)
    control.on_heartbeat(beat("w1", held=True))
    assert control.on_worker_gone("w1") == [JobRef(room="call-a", identity="media-a")]
    assert control.on_worker_gone("w1") == []
    assert control.silent_workers() == []
    control.on_heartbeat(beat("w2", held=True))
    control.on_heartbeat(beat("w2", held=True, stopping=True))  # goodbye first: its jobs leave themselves
    assert control.on_worker_gone("w2") == []


def test_the_route_refuses_strangers(control_plane):
    url, sink, _served = control_plane
    r = httpx.post(url + "/internal/media/alive", params={"worker_id": "worker-0123456789ab"}, content=b".")
    assert r.status_code == 401
    r = httpx.post(
        url + "/internal/media/alive",
        params={"worker_id": "x"},
        content=b".",
        headers={
            "Authorization": "Bearer " + __import__("functions.media_protocol").media_protocol.internal_token(SECRET)
        },
    )
    assert r.status_code == 422 and sink.reports == []


def test_a_stopping_server_lets_go_of_the_connection_without_a_death(control_plane):
    """The server's stop is not held up by a body that never ends, and nobody is declared dead."""
    url, sink, served = control_plane
    proc, worker_id = start_worker(url)
    try:
        wait_until(lambda: held_beat(sink, worker_id), 20, "a beat saying the liveness connection is open")
        started = time.monotonic()
        served.__exit__(None, None, None)
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(10)
    assert took < 2.0, f"the server took {took:.1f} s to stop"
    assert sink.first(WorkerGone) is None
