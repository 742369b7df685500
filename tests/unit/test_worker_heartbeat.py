"""Worker liveness from heartbeats (no server: `MediaControl` is fed beats and the clock moves).

What a caller would notice if this were wrong: a killed worker's hold audio never comes back
(lost jobs not found), or a job that was already re-dispatched elsewhere gets kicked out (a new
job mistaken for the ghost of the old one).
"""

from __future__ import annotations

import pytest

from control import media_control
from control.media_control import MediaControl
from functions.media_protocol import (
    WORKER_SILENT_S,
    WORKER_STUCK_S,
    CallJob,
    JobEnvelope,
    JobRef,
    MediaEvent,
    ReportEnvelope,
    WorkerHeartbeat,
)
from functions.settings import load_settings
from media.heartbeat import Heartbeat, job_ref

pytestmark = pytest.mark.unit


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


def beat(worker: str, *identities: str, stopping: bool = False, held: bool = False) -> WorkerHeartbeat:
    jobs = [JobRef(room=f"call-{i.removeprefix('media-')}", identity=i) for i in identities]
    return WorkerHeartbeat(worker_id=worker, jobs=jobs, stopping=stopping, held=held)


@pytest.fixture
def control() -> MediaControl:
    return MediaControl(load_settings(), rooms=None)


def test_a_silent_worker_loses_its_jobs_once(control, clock):
    assert control.on_heartbeat(beat("w1", "media-a", "media-b")) == []
    assert control.on_heartbeat(beat("w2", "media-c")) == []
    clock.now += WORKER_SILENT_S / 2
    control.on_heartbeat(beat("w2", "media-c"))
    assert control.silent_workers() == []
    clock.now += WORKER_SILENT_S
    lost = control.silent_workers()
    assert sorted(j.identity for j in lost) == ["media-a", "media-b"]  # w2 beat recently: its job is fine
    assert control.silent_workers() == []  # reported once
    assert control.lost_jobs == 2


def test_a_job_the_worker_stops_listing_is_lost(control, clock):
    """Its process died while the worker lives on."""
    control.on_heartbeat(beat("w1", "media-a", "media-b"))
    clock.now += 0.5
    assert [j.identity for j in control.on_heartbeat(beat("w1", "media-b"))] == ["media-a"]


def test_a_job_that_rejoined_elsewhere_is_not_lost(control, clock):
    control.on_heartbeat(beat("w1", "media-a"))
    clock.now += 0.3
    control.on_event(MediaEvent(call_id="a", event="joined"))  # the re-dispatched job on another worker
    clock.now += WORKER_SILENT_S * 2
    assert control.silent_workers() == []


def test_a_job_moved_to_another_worker_belongs_to_it(control, clock):
    control.on_heartbeat(beat("w1", "media-a"))
    control.on_heartbeat(beat("w2", "media-a"))
    clock.now += 0.5
    assert control.on_heartbeat(beat("w1")) == []  # not w1's any more
    clock.now += WORKER_SILENT_S * 2
    control.on_heartbeat(beat("w2", "media-a"))
    assert control.silent_workers() == []  # w1 is silent, but it owns nothing


def test_a_clean_stop_loses_nothing(control, clock):
    control.on_heartbeat(beat("w1", "media-a"))
    assert control.on_heartbeat(beat("w1", "media-a", stopping=True)) == []
    clock.now += WORKER_SILENT_S * 2
    assert control.silent_workers() == []


def _metadata(call_id: str, url: str) -> str:
    spec = CallJob(call_id=call_id, caller_identity=f"caller-{call_id}", control_url=url)
    return JobEnvelope(job=spec).model_dump_json()


def test_the_worker_beats_each_control_plane_with_its_own_jobs_and_says_goodbye_to_all():
    jobs = [(_metadata("a", "http://one"), "call-a"), (_metadata("b", "http://two"), "call-b"), ("junk", "x")]
    hb = Heartbeat(lambda: list(jobs), "secret")
    beats = hb.beats()
    assert {u: [j.identity for j in b.jobs] for u, b in beats.items()} == {
        "http://one": ["media-a"],
        "http://two": ["media-b"],
    }
    jobs.pop(1)
    beats = hb.beats()  # "two" hears once more, with no jobs: they ended, its worker did not
    assert {u: [j.identity for j in b.jobs] for u, b in beats.items()} == {"http://one": ["media-a"], "http://two": []}
    assert set(hb.beats()) == {"http://one"}
    goodbye = hb.beats(stopping=True)
    assert set(goodbye) == {"http://one", "http://two"} and all(b.stopping for b in goodbye.values())
    assert job_ref("not json", "x") is None
    # A beat is a report the control plane's endpoint accepts.
    body = ReportEnvelope(report=goodbye["http://one"]).model_dump_json()
    assert isinstance(ReportEnvelope.model_validate_json(body).report, WorkerHeartbeat)


def test_time_the_control_plane_itself_lagged_does_not_count(control, clock):
    """Beats not taken because this loop was busy are not a dead worker."""
    control.on_heartbeat(beat("w1", "media-a"))
    clock.now += WORKER_SILENT_S + 1.0
    assert control.silent_workers(lag_s=2.0) == []
    clock.now += WORKER_SILENT_S
    assert [j.identity for j in control.silent_workers()] == ["media-a"]


# --- with the liveness connection (the connection itself: tests/unit/test_worker_liveness.py) ------------


def test_late_beats_of_a_worker_holding_its_connection_are_not_a_death(control, clock):
    control.on_heartbeat(beat("w1", "media-a", held=True))
    clock.now += WORKER_SILENT_S * 2  # starved: no beat for 5 s
    assert control.silent_workers() == []
    control.on_heartbeat(beat("w1", "media-a", held=True))  # it was only late
    clock.now += WORKER_STUCK_S + 0.1  # but a worker that never beats again is stuck: its jobs are lost
    assert control.silent_workers() == [JobRef(room="call-a", identity="media-a")]


def test_without_its_connection_the_short_bar_holds(control, clock):
    control.on_heartbeat(beat("w1", "media-a", held=False))
    clock.now += WORKER_SILENT_S + 0.1
    assert control.silent_workers() == [JobRef(room="call-a", identity="media-a")]


def test_gone_loses_the_jobs_at_once_and_once(control, clock):
    control.on_heartbeat(beat("w1", "media-a", held=True))
    assert control.on_worker_gone("w1") == [JobRef(room="call-a", identity="media-a")]
    assert control.on_worker_gone("w1") == []
    assert control.silent_workers() == []
    control.on_heartbeat(beat("w2", "media-a", held=True))
    control.on_heartbeat(beat("w2", "media-a", held=True, stopping=True))  # goodbye first: its jobs leave themselves
    assert control.on_worker_gone("w2") == []
