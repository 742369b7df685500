"""Backpressure of live transcription: what is dropped, what the agent's desk is told, what B hears.

Peers: none outside this process. `UtteranceQueue` runs with a transcriber that takes as long as
the test says (a controlled clock stands for real time); `Transcripts` uses a real SQLite store and a
recording stand-in for `Rooms.send` (LiveKit's data channel is exercised by the integration tier).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from types import SimpleNamespace

import pytest

from control.store import Store
from control.transcripts import Transcripts
from functions.media_protocol import MAX_BEHIND_S, SegmentReport, TranscriptionStatus
from functions.models import Call, TranscribeRequest, TranscribeResult, TranscriptSegment
from media.listen import Metrics, RoomListener, UtteranceQueue
from media.segmenter import Utterance

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def utt(seconds: float) -> Utterance:
    return Utterance(b"\0\0" * int(16000 * seconds), 0.0, seconds)


async def test_an_utterance_that_waited_too_long_is_dropped_and_counted() -> None:
    clock, done, gate = Clock(), [], asyncio.Event()

    async def slow(identity: str, u: Utterance, ended_at: float) -> None:
        await gate.wait()  # Whisper is busy until the test says so
        done.append(identity)

    metrics = Metrics()
    q = UtteranceQueue("call-x", slow, metrics, clock=clock)
    runner = asyncio.ensure_future(q.run())
    q.put("first", utt(2.0))
    await asyncio.sleep(0)  # "first" is in flight
    q.put("second", utt(3.0))
    clock.now += 2.0
    assert q.backlog().behind_s == 2.0  # measured from the end of the one in flight
    clock.now += MAX_BEHIND_S  # "second" now waited longer than MAX_BEHIND_S
    q.put("third", utt(1.5))
    gate.set()
    await asyncio.wait_for(q.join(), 2)
    runner.cancel()
    assert done == ["first", "third"]
    assert (metrics.dropped, metrics.dropped_s) == (1, 3.0)
    assert q.backlog().behind_s == 0.0
    assert q.backlog().dropped == 1


async def test_a_failed_utterance_does_not_stop_the_queue() -> None:
    seen = []

    async def flaky(identity: str, u: Utterance, ended_at: float) -> None:
        seen.append(identity)
        if identity == "bad":
            raise RuntimeError("model host gone")

    q = UtteranceQueue("call-y", flaky, Metrics())
    runner = asyncio.ensure_future(q.run())
    q.put("bad", utt(1.0))
    q.put("good", utt(1.0))
    await asyncio.wait_for(q.join(), 2)
    runner.cancel()
    assert seen == ["bad", "good"]


class SentRooms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object, list[str] | None]] = []

    def post(self, room: str, msg, identities: list[str] | None = None) -> None:
        self.sent.append((room, msg, identities))


async def test_the_desk_is_told_and_the_brief_says_what_it_may_miss(tmp_path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    rooms = SentRooms()
    transcripts = Transcripts(store, rooms)  # type: ignore[arg-type]
    seg = TranscriptSegment(speaker="caller", text="My order number is 88213 and it never arrived.", start=0, end=3)
    await transcripts.add(SegmentReport(call_id="c1", segment=seg))
    call = store.get_call("c1")
    assert "may miss" not in transcripts.summary_for(call).brief

    await transcripts.on_status(TranscriptionStatus(call_id="c1", behind_s=7.4, dropped=2, dropped_s=9.2))
    room, msg, to = rooms.sent[-1]
    assert (room, to, msg.type) == ("call-c1", ["agent-a"], "transcript.status")  # only A's desk
    assert msg.model_dump(mode="json")["payload"] == {"call_id": "c1", "behind_s": 7.4, "dropped": 2, "dropped_s": 9.2}
    brief = transcripts.summary_for(call).brief
    assert "This summary may miss the last 7 seconds." in brief
    assert "9 seconds of speech were not transcribed." in brief
    assert "88213" in brief or "88213" in str(transcripts.summary_for(call).identifiers)

    # Caught up: no "may miss" any more, the drop is still said.
    await transcripts.on_status(TranscriptionStatus(call_id="c1", behind_s=0.0, dropped=2, dropped_s=9.2))
    brief = transcripts.summary_for(call).brief
    assert "may miss" not in brief and "9 seconds of speech were not transcribed." in brief


async def test_a_brief_with_no_transcript_yet_still_says_it_is_behind(tmp_path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="c", caller_name="Ann", agent_identity="a"))
    transcripts = Transcripts(store, SentRooms())  # type: ignore[arg-type]
    await transcripts.on_status(TranscriptionStatus(call_id="c1", behind_s=12.0))
    brief = transcripts.summary_for(store.get_call("c1")).brief
    assert "No transcript yet." in brief and "This summary may miss the last 12 seconds." in brief


async def test_a_consult_rooms_backlog_changes_nothing_b_is_told(tmp_path) -> None:
    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    rooms = SentRooms()
    transcripts = Transcripts(store, rooms)  # type: ignore[arg-type]
    await transcripts.on_status(TranscriptionStatus(call_id="c1", transfer_id="t1", behind_s=9.0))
    assert rooms.sent == []
    assert transcripts.gap_note("c1") == ""


CUT_SPEECH = "This is Maria Lopez. My order 4417 arrived damaged. Hello, this is Maria Lopez. My order 44177 arrived."


async def test_an_utterance_cut_at_the_length_cap_stays_marked_cut_through_the_store(tmp_path) -> None:
    """The segmenter cut the caller mid-sentence (15 s without a pause): the segment says so, the store
    keeps it, and the summary rebuilt from the store after a control-plane restart reads the cut
    sentence's number as the live one did (as half a reading: "4417", not "44177")."""
    segments: list[TranscriptSegment] = []

    async def transcribe(req: TranscribeRequest) -> TranscribeResult:
        return TranscribeResult(text=CUT_SPEECH, duration_s=15.0, engine="scripted")

    async def on_segment(seg: TranscriptSegment, lag: float) -> None:
        segments.append(seg)

    room = SimpleNamespace(name="call-c1")  # _one touches nothing of the room but its name
    listener = RoomListener(room, caller_identity="caller-c1", transcribe=transcribe, on_segment=on_segment)  # type: ignore[arg-type]
    await listener._one("caller-c1", Utterance(b"\0\0" * 1600, 0.0, 15.0, capped=True), time.monotonic())
    await listener._one("caller-c1", Utterance(b"\0\0" * 1600, 15.0, 16.0), time.monotonic())
    assert [s.cut for s in segments] == [True, False]

    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    live = Transcripts(store, SentRooms())  # type: ignore[arg-type]
    await live.add(SegmentReport(call_id="c1", segment=segments[0]))
    assert live.summary_for(store.get_call("c1")).brief.startswith("Maria Lopez, order 4417.")
    assert [s.cut for s in store.segments("c1")] == [True]
    restarted = Transcripts(Store(tmp_path / "t.sqlite3"), SentRooms())  # type: ignore[arg-type]
    assert restarted.summary_for(store.get_call("c1")).brief.startswith("Maria Lopez, order 4417.")


def test_a_database_from_before_the_cut_flag_is_read_as_not_cut(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # transcript_segments as it was created before `cut` existed
        db.execute(
            "CREATE TABLE transcript_segments (call_id TEXT NOT NULL, transfer_id TEXT, seq INTEGER NOT NULL, "
            "speaker TEXT NOT NULL, text TEXT NOT NULL, start REAL NOT NULL, end_ REAL NOT NULL, "
            "words TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL, PRIMARY KEY (call_id, seq))"
        )
        db.execute("INSERT INTO transcript_segments VALUES ('c1', NULL, 1, 'caller', 'Hi.', 0, 1, '[]', 0)")
    store = Store(path)
    store.add_segment("c1", TranscriptSegment(speaker="caller", text="My order 44177 arr", cut=True))
    store.add_segment("c1", TranscriptSegment(speaker="caller", text="My order 441 Sanra.", fallback=True))
    assert [(s.text, s.cut, s.fallback) for s in store.segments("c1")] == [
        ("Hi.", False, False),
        ("My order 44177 arr", True, False),
        ("My order 441 Sanra.", False, True),
    ]


async def test_a_segment_from_the_fallback_model_stays_marked_through_the_store(tmp_path) -> None:
    """The worker was behind and the fast model transcribed an utterance: the segment says so, the
    store keeps it, and the summary rebuilt from the store after a control-plane restart still ranks the
    accurate model's reading of the number first, as the live one did."""
    said = iter(
        [
            TranscribeResult(text="My order 4417 arrived damaged.", duration_s=3.0, engine="base"),
            *[
                TranscribeResult(
                    text="Their order 441 Sanra arrived damaged.", duration_s=3.0, engine="tiny.en", fallback=True
                )
                for _ in range(2)
            ],
        ]
    )
    segments: list[TranscriptSegment] = []

    async def transcribe(req: TranscribeRequest) -> TranscribeResult:
        return next(said)

    async def on_segment(seg: TranscriptSegment, lag: float) -> None:
        segments.append(seg)

    room = SimpleNamespace(name="call-c1")  # _one touches nothing of the room but its name
    listener = RoomListener(room, caller_identity="caller-c1", transcribe=transcribe, on_segment=on_segment)  # type: ignore[arg-type]
    for n in range(3):
        await listener._one("caller-c1", Utterance(b"\0\0" * 1600, 3.0 * n, 3.0 * n + 3), time.monotonic())
    assert [s.fallback for s in segments] == [False, True, True]

    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    live = Transcripts(store, SentRooms())  # type: ignore[arg-type]
    for seg in segments:
        await live.add(SegmentReport(call_id="c1", segment=seg))
    assert "order 4417." in live.summary_for(store.get_call("c1")).brief
    assert [s.fallback for s in store.segments("c1")] == [False, True, True]
    restarted = Transcripts(Store(tmp_path / "t.sqlite3"), SentRooms())  # type: ignore[arg-type]
    assert "order 4417." in restarted.summary_for(store.get_call("c1")).brief
