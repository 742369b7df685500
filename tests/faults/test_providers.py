"""The LLM, TTS and STT failing, then hanging, in the middle of live calls: each degrades what it
serves and nothing else. Calls and transfers go on, nobody waits on a provider past its bound.

- LLM (the control plane's rolling-summary refresh): initiate never waits on it; B's card and brief
  are the offline extraction (`offline` / `offline_fallback`), never a stall.
- TTS (the consult job's brief): B gets the card as text, no audio; the job reports the failure
  (`synthesize_speech` not ok in the function status the Calls tab shows); A and B talk.
- STT (live captions): utterances are sent and fail (or time out), no caption is made up; the call's
  audio is untouched.
Before the faults, the same path is shown working (an utterance becomes a stored segment), so the
failures are of something that ran.

Peers: the real app (ASGI, in process) on the session's livekit-server; a media worker of this test's
own (`worker.py`, its jobs dispatched to it alone) whose STT and TTS, like the control plane's LLM, are
the local OpenAI-compatible server (tests/fakes/openai_server.py), which fails or hangs on command;
realtime-SDK peers.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from functions.models import TransferState
from tests.fakes.openai_server import OpenAIRecorder
from tests.faults.conftest import Scene, briefing, running_app
from tests.support.media_plane import agent_name, own_worker, worker_env

S = TransferState
LLM_TIMEOUT_S = 1.0  # the worker's TTS client then gives up after 10 s, its STT client after 15 s
CAPTION = "My order number is 4417."
INITIATE_S = 3.0  # initiate's bound on a busy machine, whatever the providers do


def tone_24k(seconds: float = 0.6) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (np.sin(2 * np.pi * 300 * t) * 0.3 * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def provider():
    server = OpenAIRecorder().start()
    server.transcribe = lambda _wav, _form: {"text": CAPTION}
    server.speak = lambda _body: [tone_24k()]
    server.chat_script = [{"status": 500, "error": "no summaries here"}]
    server.hang_s = 40.0
    yield server
    server.faults.clear()
    server.stop()


@pytest.fixture(scope="module")
def provider_worker(livekit_server, provider):
    name = agent_name()
    env = worker_env(
        name,
        STT_PROVIDER="openai",
        TTS_PROVIDER="openai",
        SUMMARIZER_PROVIDER="offline",
        OPENAI_BASE_URL=provider.base_url,
        OPENAI_API_KEY="test-key",
        LLM_TIMEOUT_S=str(LLM_TIMEOUT_S),
    )
    worker = own_worker(livekit_server, "worker-providers", env)
    yield name
    worker.stop()


@pytest.fixture
async def providers_app(fault_settings, control_hub, provider, provider_worker):
    settings = fault_settings.model_copy(
        update={
            "media_agent_name": provider_worker,
            "live_transcription": True,
            "openai_base_url": provider.base_url,
            "openai_api_key": SecretStr("test-key"),
            "summarizer_provider": "openai",
            "llm_timeout_s": LLM_TIMEOUT_S,
        }
    )
    async with running_app(settings, control_hub) as app:
        yield app


@pytest.fixture
async def client(providers_app):
    transport = httpx.ASGITransport(app=providers_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://faults.test", timeout=60) as c:
        yield c


def requests(provider: OpenAIRecorder, path: str) -> int:
    return sum(r.path.endswith(path) for r in provider.requests)


async def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        await asyncio.sleep(0.1)


async def transfer_with_a_broken_brief(scene: Scene, provider: OpenAIRecorder) -> dict:
    """Initiate (bounded whatever the LLM does), B joins: the card arrives as text, no brief is heard,
    the job reports the TTS failure; A and B hear each other. Returns the summary B was given."""
    started, since = time.monotonic(), time.time()
    r = await scene.initiate()
    took = time.monotonic() - started
    assert r.status_code == 201, r.text
    assert took < INITIATE_S, f"initiate took {took:.1f} s"
    await scene.join_consult(listen=True)
    card = await scene.b_consult.wait_message(lambda m: m.get("type") == "transfer.summary", timeout=20)
    summary = card["payload"]["summary"]
    assert summary["brief"] and summary["source"] in ("offline", "offline_fallback"), summary
    await scene.b_consult.wait_hears(scene.a_id, timeout=15)
    orch = scene.orch

    def tts_failure_reported() -> bool:
        return any(st.function == "synthesize_speech" and not st.ok and st.at > since for st in orch.function_status)

    await wait(tts_failure_reported, 30, "the TTS failure reported by the consult job")
    assert not scene.b_consult.heard[briefing(scene.tid)].energetic_frames, "B heard a brief nobody could speak"
    print(f"\n[providers] initiate {took:.2f} s, card '{summary['brief'][:60]}…' ({summary['source']})")
    return summary


async def test_llm_tts_stt_failing_then_hanging_mid_call(providers_app, client, provider: OpenAIRecorder):
    working = Scene(providers_app, client, a="agent-p1", b="agent-q1")
    hanging = Scene(providers_app, client, a="agent-p2", b="agent-q2")
    try:
        await working.start(utterances=True)
        store = working.orch.store
        # Working first: an utterance of the caller becomes a stored caption.
        await wait(lambda: any(s.text == CAPTION for s in store.segments(working.call_id)), 30, "a first caption")

        # Everything fails, mid-call.
        provider.faults.update(chat="fail", transcriptions="fail", speech="fail")
        stt, segments = requests(provider, "/audio/transcriptions"), len(store.segments(working.call_id))
        await wait(
            lambda: requests(provider, "/audio/transcriptions") > stt + 1, 20, "utterances sent to a failing STT"
        )
        await working.caller.wait_hears_only({working.a_id})
        await working.a.wait_hears(working.caller_id)
        await transfer_with_a_broken_brief(working, provider)
        assert len(store.segments(working.call_id)) == segments, "a caption appeared from a failing STT"
        assert (await working.accept()).status_code == 200
        await working.b_joins_call(await working.agent_token(working.b_id, working.room))
        await working.assert_with_b()

        # Everything hangs (longer than any client's timeout), mid-call on another call.
        provider.faults.update(chat="hang", transcriptions="hang", speech="hang")
        await hanging.start(utterances=True)
        stt = requests(provider, "/audio/transcriptions")
        await wait(lambda: requests(provider, "/audio/transcriptions") > stt, 20, "an utterance sent to a hung STT")
        await transfer_with_a_broken_brief(hanging, provider)
        started = time.monotonic()
        assert (await client.get("/api")).status_code == 200
        assert time.monotonic() - started < 1.0, "the control plane waited on a hung provider"
        await hanging.caller.wait_hears(hanging.hold_id, timeout=10)  # hold audio never waits on a provider
        assert (await hanging.cancel()).status_code == 200
        await hanging.assert_back_with_a(S.cancelled)
    finally:
        provider.faults.clear()
        await asyncio.gather(working.close(), hanging.close())
