"""The control plane's side of live transcription: segments reported by media jobs are stored,
captioned to the room, and folded into each call's rolling summary (the offline extraction always;
and, when the orchestrator gives one, an LLM refresh through the functions gateway, run on the
control plane's event loop), which the orchestrator reads at transfer time without waiting.

Call rooms feed the summary; consult rooms (A briefing B) are stored with their transfer and
captioned to the consult, but never reach the summary spoken to B.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from control.rooms import Rooms
from control.store import Store
from functions.background import Background
from functions.errors import StorageUnavailable
from functions.events import (
    SegmentPayload,
    SummaryUpdated,
    SummaryUpdatedPayload,
    TranscriptSegmentAdded,
    TranscriptStatusChanged,
    TranscriptStatusPayload,
)
from functions.media_protocol import BEHIND_WARN_S, SegmentReport, TranscriptionStatus
from functions.models import Call, CallSummary, TranscriptSegment
from functions.summary.summarization import Refresh, RollingSummary

log = logging.getLogger(__name__)
MAX_UNSTORED = 20_000  # segments kept in memory while the database cannot be written
UNSTORED_RETRY_S = 0.5


def placeholder_summary(call: Call) -> CallSummary:
    """Before anyone has said anything: the caller's name only."""
    name = call.caller_name or None
    who = f"Caller {name}" if name else "The caller"
    return CallSummary(caller_name=name, brief=f"Incoming warm transfer. {who} is on hold. No transcript yet.")


class Transcripts:
    def __init__(
        self,
        store: Store,
        rooms: Rooms,
        refresh_factory: Callable[[], Refresh | None] | None = None,
        *,
        refresh_timeout_s: float = 5.0,
    ) -> None:
        """`refresh_factory`: the rolling summaries' LLM refresh (None: offline only), asked for lazily."""
        self.store = store
        self.rooms = rooms
        self._refresh = refresh_factory
        self.refresh_timeout_s = refresh_timeout_s
        self.summaries: dict[str, RollingSummary] = {}
        self.dropped: dict[str, int] = {}  # call_id → utterances its jobs dropped (too far behind)
        self.lag_s: dict[str, float] = {}  # call_id → the last segment's end-of-utterance → report lag
        self.backlog: dict[str, TranscriptionStatus] = {}  # call_id → how far its call room's captions lag
        self.background = Background()
        self.unstored: deque[tuple[str, TranscriptSegment, str | None]] = deque()  # waiting for the database
        self._flushing: asyncio.Task | None = None

    def _rolling(self, call_id: str) -> RollingSummary:
        rolling = self.summaries.get(call_id)
        if rolling is None:
            # The name the caller typed wins over how speech-to-text spelled it.
            known = self.store.get_call(call_id).caller_name or None
            refresh = self._refresh() if self._refresh else None
            # Refreshes run on the control plane's loop (both callers of this are on it).
            loop = asyncio.get_running_loop() if refresh else None
            rolling = RollingSummary(refresh, loop=loop, timeout_s=self.refresh_timeout_s, known_name=known)
            # After a restart of the control plane the stored transcript seeds the summary again.
            if stored := self.store.segments(call_id):
                rolling.update(stored)
            self.summaries[call_id] = rolling
        return rolling

    def summary_for(self, call: Call) -> CallSummary:
        """Never blocks: the rolling summary as it stands (or the caller's name only), and what it
        may be missing when live transcription is behind (also before its first words arrive)."""
        rolling = self._rolling(call.call_id)
        if not rolling.segments:
            summary = placeholder_summary(call)
        else:
            summary = rolling.current
            if not summary.caller_name and call.caller_name:
                summary = summary.model_copy(update={"caller_name": call.caller_name})
        if gap := self.gap_note(call.call_id):
            summary = summary.model_copy(update={"brief": f"{summary.brief} {gap}".strip()})
        return summary

    def gap_note(self, call_id: str) -> str:
        """What the summary may be missing, in words B hears: live transcription behind, or dropped."""
        status = self.backlog.get(call_id)
        if status is None:
            return ""
        notes = []
        if status.behind_s > BEHIND_WARN_S:
            notes.append(f"This summary may miss the last {status.behind_s:.0f} seconds.")
        if status.dropped_s >= 1:
            notes.append(f"{status.dropped_s:.0f} seconds of speech were not transcribed.")
        return " ".join(notes)

    async def on_status(self, report: TranscriptionStatus) -> None:
        """A job's backlog: kept for the brief, and shown on the call's agent's desk."""
        if report.transfer_id:
            return  # a consult's captions lagging changes nothing B is told
        self.backlog[report.call_id] = report
        call = self.store.get_call(report.call_id)
        if call.agent_identity:
            payload = TranscriptStatusPayload(
                call_id=call.call_id, **report.model_dump(include={"behind_s", "dropped", "dropped_s"})
            )
            msg = TranscriptStatusChanged(payload=payload)
            self.rooms.post(call.room, msg, [call.agent_identity])

    def _store(self, call_id: str, seg: TranscriptSegment, transfer_id: str | None) -> None:
        """Stored now, or, while the database cannot be written (read-only, disk full), kept in order
        and stored once it can: the captions and the summary go on meanwhile, nothing is lost (up to
        MAX_UNSTORED segments, about an hour of a busy call centre's speech)."""
        if not self.unstored:
            try:
                self.store.add_segment(call_id, seg, transfer_id=transfer_id)
                return
            except StorageUnavailable as e:
                log.warning("transcript segments wait for the database: %s", e)
        if len(self.unstored) >= MAX_UNSTORED:
            log.error("transcript segment of %s lost: %d already wait for the database", call_id, MAX_UNSTORED)
            return
        self.unstored.append((call_id, seg, transfer_id))
        if self._flushing is None or self._flushing.done():
            self._flushing = self.background.spawn(self._flush())

    async def _flush(self) -> None:
        while self.unstored:
            call_id, seg, transfer_id = self.unstored[0]
            try:
                self.store.add_segment(call_id, seg, transfer_id=transfer_id)
            except StorageUnavailable:
                await asyncio.sleep(UNSTORED_RETRY_S)
                continue
            self.unstored.popleft()
        log.info("the transcript segments that waited for the database are stored")

    def forget(self, call_id: str) -> None:
        self.summaries.pop(call_id, None)
        self.dropped.pop(call_id, None)
        self.lag_s.pop(call_id, None)
        self.backlog.pop(call_id, None)

    async def add(self, report: SegmentReport) -> None:
        seg = report.segment
        call = self.store.get_call(report.call_id)
        self.dropped[call.call_id] = max(self.dropped.get(call.call_id, 0), report.dropped)
        self.lag_s[call.call_id] = report.lag_s
        self._store(call.call_id, seg, report.transfer_id)
        caption = SegmentPayload(
            call_id=call.call_id, transfer_id=report.transfer_id, **seg.model_dump(exclude={"words", "cut", "fallback"})
        )
        if report.transfer_id:
            transfer = self.store.get_transfer(report.transfer_id)
            self.rooms.post(transfer.consult_room, TranscriptSegmentAdded(payload=caption))
            return
        self.rooms.post(call.room, TranscriptSegmentAdded(payload=caption))
        rolling = self._rolling(call.call_id)
        summary = await asyncio.to_thread(rolling.update, [seg])
        call = self.store.get_call(call.call_id)
        if call.agent_identity:  # the summary is for agents only, never the caller
            msg = SummaryUpdated(payload=SummaryUpdatedPayload(call_id=call.call_id, summary=summary))
            self.rooms.post(call.room, msg, [call.agent_identity])
