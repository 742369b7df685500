"""What B hears in the consult, and B questioning the briefing, through the whole media plane: the
session's real livekit-server, its real media worker process (consult job, Whisper and piper in its
model host), realtime-SDK peers publishing speech made by piper (the caller, B) and espeak-ng (A), and
Whisper base in this process transcribing the audio B received. The answers come from the offline
question matcher (no LLM is configured: its path is tested against a local OpenAI-compatible server
in tests/ai/test_briefing_qa_llm.py).

- B's brief, as B received it, transcribed: it has the caller's name and the account number's digits.
- B asks "What's the account number?" (piper, while nobody else speaks): the answer B hears,
  transcribed, has the digits; the exchange is stored with the transfer and A and B were sent it.
- A asks B the same question in the consult: A's speech is transcribed (it reaches the consult's
  transcript) and the briefing says nothing.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from functions.media_protocol import briefing_identity, media_identity
from functions.settings import load_settings
from functions.stt.transcription import WhisperTranscriber
from functions.tts.speech import EspeakSpeaker, PiperSpeaker
from tests.ai.helpers import digits, synth
from tests.integration.conftest import available_agent
from tests.support.peer import Peer

pytestmark = [pytest.mark.integration, pytest.mark.ai, pytest.mark.timeout(300)]

NAME, ACCOUNT = "Sarah Johnson", "447192"
CALLER_LINES = [
    "Hi, my name is Sarah Johnson and my account number is 4 4 7 1 9 2.",
    "I was charged twice for my internet bill, eighty nine dollars each time.",
]


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    s = load_settings(data_dir=tmp_path_factory.mktemp("voices"))
    return {"piper": PiperSpeaker(s), "espeak": EspeakSpeaker(s)}


@pytest.fixture(scope="module")
def ears():
    """Whisper base (full window), as a person's ears for what B received: not the worker's model."""
    return WhisperTranscriber(load_settings()).load()


@pytest.fixture
def control_settings(control_settings):
    return control_settings.model_copy(update={"live_transcription": True, "briefing_qa": True})


def heard(ears: WhisperTranscriber, pcm: bytes) -> str:
    return ears.transcribe(pcm, 48000).text


async def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def settled(count, at_least: int, quiet_s: float = 2.5, timeout: float = 60.0) -> None:
    """`count()` reached `at_least` and has not changed for `quiet_s`: every utterance is transcribed
    (a pause inside a line can make two segments of it)."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while (n := count()) < at_least or n != last or time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"only {n} of {at_least} segments after {timeout}s"
        if n != last:
            last, since = n, time.monotonic()
        await asyncio.sleep(0.1)


async def listening(orch, job: str, speaker: str, timeout: float = 60.0) -> None:
    await wait_for(lambda: (job, speaker) in orch.media.listening, f"{job} listening to {speaker}", timeout)


class Consult:
    """A call in which the caller said `lines`, transferred: A and B in the consult with the briefing."""

    async def start(self, orch, voices, lines: list[str] = CALLER_LINES) -> Consult:
        self.orch, self.peers = orch, []
        url = orch.settings.livekit_url
        self.call = call = await orch.start_call(NAME, agent_identity="agent-a")
        caller = await self.peer(call.caller_identity).connect(
            url, orch.caller_token(call.call_id, call.caller_identity).token
        )
        await self.peer("agent-a").connect(url, orch.agent_token("agent-a", call.room).token)
        await listening(orch, media_identity(call.call_id), call.caller_identity)
        for line in lines:
            await caller.say(*synth(voices["piper"], line))
            await asyncio.sleep(1.0)
        await settled(lambda: len(orch.store.segments(call.call_id)), len(lines))
        await wait_for(lambda: orch.transcripts.summary_for(call).identifiers, "the account in the summary", 10)

        # Presence: the transfer goes only to an agent signed in with a live lobby connection.
        self.peers.append(await available_agent(orch, "agent-b"))
        self.t = await orch.initiate(call.call_id, "agent-a", "agent-b")
        self.briefing = briefing_identity(self.t.transfer_id)
        self.joined_at = time.monotonic()
        self.a = await self.peer("agent-a").connect(url, orch.agent_token("agent-a", self.t.consult_room).token)
        self.b = await self.peer("agent-b", record=True).connect(
            url, orch.agent_token("agent-b", self.t.consult_room).token
        )
        return self

    def peer(self, identity: str, record: bool = False) -> Peer:
        p = Peer(identity, voice=True, record=record)
        self.peers.append(p)
        return p

    async def brief(self) -> bytes:
        """The brief as B received it, to its end."""
        _start, pcm = await self.b.speech_after(self.briefing, self.joined_at, timeout=60)
        return pcm

    async def close(self) -> None:
        for p in self.peers:
            await p.disconnect()


@pytest.fixture
async def consult(orchestrator, voices):
    c = Consult()
    try:
        yield await c.start(orchestrator, voices)
    finally:
        await c.close()


async def test_b_hears_the_brief_and_the_answer_to_a_question(consult, voices, ears):
    orch, b = consult.orch, consult.b
    brief = heard(ears, await consult.brief())
    assert "sarah" in brief.lower() and ACCOUNT in digits(brief), brief

    # B asks while nobody else speaks: the briefing answers, in speech.
    await listening(orch, consult.briefing, "agent-b")
    await asyncio.sleep(1.0)
    asked_at = await b.say(*synth(voices["piper"], "What's the account number?"))  # its last sample's playout
    started, pcm = await b.speech_after(consult.briefing, asked_at, timeout=30)
    answer = heard(ears, pcm)
    assert ACCOUNT in digits(answer), answer
    print(f"question → first answer frame at B: {(started - asked_at) * 1000:.0f} ms")

    # The exchange is stored with the transfer, and B's desk (the consult room) was told.
    (exchange,) = await wait_for(lambda: orch.store.qa(consult.t.transfer_id), "the stored exchange", 10)
    said = [s.text for s in orch.store.segments(consult.call.call_id)]
    assert exchange.asked_by == "agent-b" and exchange.kind.value == "identifier" and exchange.found, (exchange, said)
    assert "account" in exchange.question.lower() and ACCOUNT in digits(exchange.answer), exchange
    assert exchange.spoken and exchange.timings.first_frame_ms > 0
    msg = await b.wait_message(lambda m: m.get("type") == "transfer.qa", timeout=10)
    assert msg["payload"]["exchange"]["answer"] == exchange.answer


async def test_a_question_a_asks_b_is_not_answered(consult, voices):
    orch, a, b = consult.orch, consult.a, consult.b
    await consult.brief()
    await listening(orch, consult.briefing, "agent-a")
    await asyncio.sleep(1.0)
    asked_at = await a.say(*synth(voices["espeak"], "What's the account number?"))
    # The consult job heard A's question (it is in the consult's transcript) ...
    tid = consult.t.transfer_id
    segs = await wait_for(
        lambda: orch.store.segments(consult.call.call_id, transfer_id=tid, consult=True),
        "A's question in the consult transcript",
    )
    assert segs[0].speaker == "agent:agent-a" and re.search(r"account", segs[0].text, re.I), segs
    # ... and the briefing says nothing: no audio, nothing stored.
    await asyncio.sleep(3.0)
    assert b.first_energy_after(consult.briefing, asked_at) is None
    assert orch.store.qa(tid) == []
