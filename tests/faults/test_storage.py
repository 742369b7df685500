"""The database cannot be written mid-call (read-only, then a full disk): every request that would
change something gets a clear 503 and changes nothing, the calls go on (media untouched), what
happens meanwhile without a request (B leaving the consult, a transcript segment from the media job)
waits for the database, and once it is writable again it is all applied: nothing is lost.

The tests run as root, which ignores file modes, so read-only and a full disk are SQLite's own pragmas
on the app's connection (tests/support/sqlite_faults.py): the same SQLITE_READONLY and SQLITE_FULL
errors a read-only mount or a full disk raise.

Peers: the real app (ASGI, in process) on the session's livekit-server and media worker; realtime-SDK
peers; the segment is posted to /internal/media exactly as a media job's reporter posts it.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from functions.media_protocol import INTERNAL_PATH, ReportEnvelope, SegmentReport, internal_token
from functions.models import CallStatus, TranscriptSegment, TransferState
from tests.faults.conftest import Scene, headers
from tests.support.sqlite_faults import SqliteFaults

S = TransferState


@pytest.fixture
def faults() -> SqliteFaults:
    return SqliteFaults()


@pytest.fixture
def store_connection(faults):
    return faults.connection  # the app's own connections: a read-only mount or a full disk on demand


def assert_refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
    body = r.json()
    assert body["error"] == "StorageUnavailable" and words in body["detail"] and "try again" in body["detail"], body


async def report_segment(scene: Scene, text: str) -> int:
    """What a call job's reporter posts for one transcribed utterance of the caller."""
    secret = scene.orch.settings.livekit_api_secret.get_secret_value()
    seg = TranscriptSegment(speaker="caller", text=text, start=0.0, end=1.0)
    body = ReportEnvelope(report=SegmentReport(call_id=scene.call_id, segment=seg)).model_dump(mode="json")
    r = await scene.client.post(INTERNAL_PATH, json=body, headers={"Authorization": f"Bearer {internal_token(secret)}"})
    return r.status_code


async def test_read_only_then_full_database_mid_call_loses_nothing(scene: Scene, caplog, faults):
    caplog.set_level(logging.WARNING)
    store = scene.orch.store
    db = scene.orch.settings.database_path.name
    await scene.start()
    assert (await scene.initiate()).status_code == 201
    await scene.join_consult()
    await scene.caller.wait_hears(scene.hold_id, timeout=20)

    faults.read_only(db)
    try:
        assert_refused(await scene.accept(), "read-only")
        assert_refused(await scene.cancel(), "read-only")
        assert (await scene.client.get("/api")).status_code == 200  # still serving
        assert await report_segment(scene, "My order number is 4417.") == 204  # accepted, kept in order
        # B's page closes: the consult is over for B, but the state cannot record it yet.
        await scene.b_consult.disconnect()
        await asyncio.sleep(2.0)
        t = await scene.db_transfer()
        assert t["state"] == S.consulting.value and [e["to_state"] for e in t["events"]] == ["consulting"]
        # The media still says what the state says: on hold, A muted, nobody half-moved.
        assert await scene.hold_flag() is True and await scene.permissions(scene.a_id) == (False, False)
        assert scene.caller.hears(scene.hold_id) and not scene.caller.disconnected.is_set()
        assert store.segments(scene.call_id) == []
    finally:
        faults.read_only(db, on=False)
    # Writable again: B's departure is applied (the caller is A's again) and the segment is stored.
    await scene.assert_back_with_a(S.target_left)
    await scene.caller.wait_until(lambda: bool(store.segments(scene.call_id)), 5, "the waiting segment stored")
    assert [s.text for s in store.segments(scene.call_id)] == ["My order number is 4417."]

    # A full disk: transcript segments (the busiest writer) fill it; the call goes on, every further
    # segment waits in order, and they are all stored once there is room again.
    stored_before = len(store.segments(scene.call_id))
    faults.disk_full(db)
    try:
        for n in range(2000):
            assert await report_segment(scene, f"Segment {n}: " + "words " * 150) == 204
            if scene.orch.transcripts.unstored:
                break
        assert scene.orch.transcripts.unstored, "the capped database never filled up"
        full_at = n
        for m in range(full_at + 1, full_at + 4):
            assert await report_segment(scene, f"Segment {m}: " + "words " * 150) == 204
        assert len(scene.orch.transcripts.unstored) == 4
        assert (await scene.client.get(f"/api/transfer/{scene.tid}", headers=headers(scene.a_id))).status_code == 200
        await scene.caller.wait_hears_only({scene.a_id})
        await scene.a.wait_hears(scene.caller_id)
    finally:
        faults.disk_full(db, full=False)
    want = stored_before + full_at + 4
    await scene.caller.wait_until(lambda: len(store.segments(scene.call_id)) == want, 5, "the waiting segments stored")
    texts = [s.text.split(":")[0] for s in store.segments(scene.call_id)[stored_before:]]
    assert texts == [f"Segment {n}" for n in range(full_at + 4)], "a segment was lost or reordered"
    print(f"\n[storage] the disk filled after {full_at} segments; 4 waited and were stored in order once it had room")
    assert (await scene.initiate()).status_code == 201  # and the next transfer goes through
    assert scene.db_call().status is CallStatus.on_hold
    assert not [r for r in caplog.records if "Task exception was never retrieved" in r.getMessage()]
