"""B questions the briefing, in the consult job: B's utterances (transcribed by the job's listener)
that are questions to the briefing are answered in speech from the call's summary and transcript,
which came with the job's dispatch (`ConsultJob`); each exchange is reported to the control plane.

The addressing rule: A and B also talk to each other in the consult, so an utterance is a question to
the briefing only if
- B said it (A's speech, and anyone else's, is never answered), and
- it starts with "briefing" ("Briefing, what's the account number?"): always answered, even while A
  talks, and "I don't know that from the call" when the call does not say; or
- it is put as a question or a request ("What's …?", "Repeat that.", "Spell the name.") about something
  the briefing knows (`functions.qa.briefing_qa.classify` is not `unknown`), and nobody else was heard from
  QUIET_S before B started it until it was transcribed: a question in a silence is for the briefing; one
  right after A spoke, or that A starts answering, is for A.

Where the time goes (each part is reported in `QATimings` and measured by bench/test_qa_latency.py):
the segmenter's end-of-utterance silence (600 ms), Whisper on the short utterance in the worker's model
host, the answer (the matcher takes microseconds; an LLM up to QA_TIMEOUT_S), piper in the model host,
then the first frame to B."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import numpy as np

from functions.audio import read_wav, resample
from functions.gateway import FunctionsGateway
from functions.media_protocol import ConsultJob, QAReport
from functions.models import (
    BriefingAnswer,
    BriefingExchange,
    BriefingQuestion,
    QATimings,
    QuestionKind,
    SpeechRequest,
    TranscriptSegment,
)
from functions.qa.briefing_qa import OfflineAnswerer, addressed, asks, classify
from functions.tts.speech import split_for_streaming
from functions.tts.textnorm import normalize_for_speech
from media.reporter import Reporter

if TYPE_CHECKING:
    from media.jobs import BriefSpeaker
    from media.listen import RoomListener

log = logging.getLogger(__name__)
QUIET_S = 1.5  # nobody else heard for this long before B's question: it is for the briefing
END_OF_SPEECH_S = 0.6  # the segmenter's end-of-utterance silence (media.segmenter, silence_ms)
FIRST_FRAME_S = 5.0  # bound on the answer's first frame being queued


class BriefingQA:
    def __init__(
        self,
        spec: ConsultJob,
        gateway: FunctionsGateway,
        speaker: BriefSpeaker,
        reporter: Reporter,
        *,
        timeout_s: float,
    ) -> None:
        self.spec = spec
        self.gateway = gateway
        self.speaker = speaker
        self.reporter = reporter
        self.timeout_s = timeout_s
        self.previous = spec.summary.brief  # what "repeat that" repeats
        self._turn = asyncio.Lock()  # questions are answered one at a time, in the order asked
        self._tasks: set[asyncio.Task] = set()

    @property
    def speaker_label(self) -> str:
        return f"agent:{self.spec.target}"

    def wants(self, seg: TranscriptSegment, listener: RoomListener) -> tuple[str, bool] | None:
        """(the question, addressed by name) if this segment is a question to the briefing, else None."""
        if seg.speaker != self.speaker_label:
            return None
        question, by_name = addressed(seg.text)
        if by_name:
            return question, True
        if not asks(question) or classify(question) is QuestionKind.unknown:
            log.info("%s: B's %r is not a question about the call", self.spec.transfer_id, question)
            return None
        if not listener.quiet_besides(self.spec.target, since=listener.t0 + seg.start - QUIET_S):
            log.info("%s: B's %r is taken as talk with A (someone else spoke)", self.spec.transfer_id, question)
            return None
        return question, False

    def heard(self, seg: TranscriptSegment, lag_s: float, listener: RoomListener) -> None:
        """A transcribed segment of the consult: answered in the background if it is a question to us."""
        wanted = self.wants(seg, listener)
        if wanted is None:
            return
        closed_at = time.monotonic() - lag_s  # when the segmenter closed the utterance
        task = asyncio.ensure_future(self._answer(*wanted, closed_at=closed_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, question: str, by_name: bool, *, closed_at: float) -> None:
        async with self._turn:
            heard_at = time.monotonic()
            req = BriefingQuestion(
                question=question[:500],
                summary=self.spec.summary,
                transcript=self.spec.transcript,
                previous_answer=self.previous[:2000],
            )
            answer = await self.ask(req)
            answered_at = time.monotonic()
            pieces = self._pieces(answer.answer)
            first_piece = await anext(pieces, None)
            spoken_at = time.monotonic()
            first = asyncio.Event()
            if first_piece is not None:
                task = asyncio.ensure_future(self.speaker.play(_then(first_piece, pieces), first))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first.wait(), FIRST_FRAME_S)
            self.previous = answer.answer
        timings = QATimings(
            end_of_speech_ms=END_OF_SPEECH_S * 1000,
            transcribe_ms=round((heard_at - closed_at) * 1000, 1),
            answer_ms=round((answered_at - heard_at) * 1000, 1),
            speech_ms=round((spoken_at - answered_at) * 1000, 1),
            first_frame_ms=round((time.monotonic() - closed_at) * 1000, 1) if first.is_set() else 0.0,
        )
        log.info("%s: Q %r → A %r (%s) %s", self.spec.transfer_id, question, answer.answer, answer.source, timings)
        exchange = BriefingExchange(
            transfer_id=self.spec.transfer_id,
            asked_by=self.spec.target,
            question=question[:500],
            answer=answer.answer,
            kind=answer.kind,
            found=answer.found,
            source=answer.source,
            addressed=by_name,
            spoken=first.is_set(),
            timings=timings,
        )
        report = QAReport(call_id=self.spec.call_id, transfer_id=self.spec.transfer_id, exchange=exchange)
        await self.reporter.send(report)

    async def ask(self, req: BriefingQuestion) -> BriefingAnswer:
        """The gateway's answer (the LLM when configured, in the worker or on Modal), bounded; the offline
        matcher's, here, when that fails or takes longer than `timeout_s`: B always gets an answer."""
        try:
            return await asyncio.wait_for(self.gateway.answer_question(req), self.timeout_s)
        except Exception as e:  # a failing or slow provider degrades to the matcher; the consult goes on
            log.warning("%s: answer_question failed (%s); answering offline", self.spec.transfer_id, e)
            return OfflineAnswerer().answer(req).model_copy(update={"source": "offline_fallback"})

    async def _pieces(self, text: str) -> AsyncIterator[np.ndarray]:
        """The answer's audio, piece by piece (`speakable_pieces`): the first is short, so it is ready
        soon; each next piece is synthesized while the one before it plays."""
        parts = speakable_pieces(text)
        pending = asyncio.ensure_future(self._speech(parts[0])) if parts else None
        try:
            for i in range(len(parts)):
                assert pending is not None
                samples = await pending
                pending = asyncio.ensure_future(self._speech(parts[i + 1])) if i + 1 < len(parts) else None
                if samples is None:
                    return  # speech failed: the answer is on the card only (or only its first part spoken)
                yield samples
        finally:
            if pending is not None:
                pending.cancel()

    async def _speech(self, text: str) -> np.ndarray | None:
        try:
            result = await self.gateway.synthesize_speech(SpeechRequest(text=text[:4000]))
            pcm, rate = read_wav(result.audio_wav)
            return np.frombuffer(resample(pcm, rate, 48000), dtype="<i2")
        except Exception as e:  # the answer is still shown on the card
            log.warning("%s: speaking the answer failed: %s", self.spec.transfer_id, e)
            return None

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()


async def _then(first: np.ndarray, rest: AsyncIterator[np.ndarray]) -> AsyncIterator[np.ndarray]:
    yield first
    async for samples in rest:
        yield samples


def speakable_pieces(text: str, max_words: int = 8) -> list[str]:
    """The answer as it is spoken (`normalize_for_speech`: "447192" read digit by digit), cut so the
    first piece is a few words: its synthesis is what B waits for. Digits or letters read one by one
    start a piece of their own ("The account number is" | "4 4 7, 1 9 2."; "Sarah is spelled" |
    "S, A, R, A, H."): cut inside, piper and the listener both stumble on the first letter."""
    spoken = normalize_for_speech(text)
    sentences = [x for x in re.split(r"(?<=[.!?;:])\s+", spoken.strip()) if x]
    m = re.search(r"\s(?=[A-Z0-9](?:,? [A-Z0-9]\b)+)", sentences[0]) if sentences else None
    if m and len(sentences[0][: m.start()].split()) >= 2:
        return [sentences[0][: m.start()], sentences[0][m.end() :], *sentences[1:]]
    return split_for_streaming(spoken, first_max_words=max_words)
