"""Every service function of a live call goes through the functions gateway, and the live rolling
summary's LLM refresh is one of them, off the transfer's path.

Peers: the session's real livekit-server and control hub; a real media worker of this module's own
(`tests.support.recording_worker`: `worker.py` with its jobs' gateway backends wrapped by the
recording double of tests/support/recording_backend.py, which delegates to the real local backends:
Whisper in the job process, piper in the worker's model host), registered under an agent name of its
own so the session's worker takes none of these jobs; the local OpenAI-compatible server of
tests/fakes/openai_server.py as the control plane's LLM; real-SDK peers speaking with piper's voice.
"""

from __future__ import annotations

import functools
import json
import time

import pytest

from functions.gateway import make_gateway
from functions.media_protocol import briefing_identity
from functions.tts.speech import PiperSpeaker
from tests.ai.helpers import synth
from tests.fakes.openai_server import OpenAIRecorder
from tests.integration.conftest import available_agent, running_orchestrator
from tests.support.media_plane import agent_name, own_worker, start_call, wait_for, worker_env
from tests.support.peer import Peer
from tests.support.recording_backend import read_records, recording

pytestmark = [pytest.mark.integration, pytest.mark.ai]

LINE = "Hi, my name is Sarah Johnson and I need help with my internet bill."
# Grounded in any transcript of LINE: no names after the first word, no numbers.
LLM_SUMMARY = {
    "caller_name": None,
    "identifiers": [],
    "issue": "Needs help with the internet bill.",
    "key_facts": [],
    "already_tried": [],
    "sentiment": "neutral",
    "requested_outcome": "Help with the internet bill",
    "brief": "Caller needs help with the internet bill.",
}
LLM_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def recorded_worker(livekit_server, tmp_path_factory):
    """This module's media worker; what its jobs' gateways ran is appended to `records`."""
    records = tmp_path_factory.mktemp("records") / "worker.jsonl"
    name = agent_name()
    worker = own_worker(livekit_server, "worker-recording", worker_env(name), records=records)
    yield name, records
    worker.stop()


@pytest.fixture(scope="module")
def caller_line():
    from functions.settings import load_settings

    return synth(PiperSpeaker(load_settings()), LINE)


@pytest.fixture
def llm():
    """The local OpenAI-compatible server (tests/fakes/openai_server.py), the control plane's LLM."""
    server = OpenAIRecorder().start()
    yield server
    server.stop()


@pytest.fixture
def live_settings(control_settings, recorded_worker, llm):
    name, _ = recorded_worker
    return control_settings.model_copy(
        update={
            "media_agent_name": name,
            "live_transcription": True,
            "openai_base_url": llm.base_url,
            "summarizer_provider": "openai",
            "llm_timeout_s": LLM_TIMEOUT_S,
        }
    )


async def test_stt_summary_and_speech_of_a_live_call_and_transfer_go_through_the_gateway(
    live_settings, control_hub, recorded_worker, llm, caller_line, tmp_path
):
    """Peers: see the module. The LLM answers; B's brief is its summary (source llm or llm+offline)."""
    _, worker_records = recorded_worker
    ours = tmp_path / "control.jsonl"
    llm.chat_script = [{"content": json.dumps(LLM_SUMMARY)}]
    since = time.time()
    wrap = functools.partial(recording, ours, "control plane")
    async with running_orchestrator(
        live_settings, control_hub, gateway=lambda services: make_gateway(live_settings, services, wrap_backend=wrap)
    ) as orch:
        call, caller, a = await start_call(orch, "Sarah Johnson", "agent-a")
        peers = [caller, a]
        try:
            await caller.say(*caller_line)
            # The segment is stored (and captioned) before it is folded into the rolling summary.
            rolling = await wait_for(
                lambda: (r := orch.transcripts.summaries.get(call.call_id)) and r.segments and r,
                60,
                "the caller's words transcribed into the rolling summary",
            )
            await wait_for(lambda: rolling.current.source == "llm", 15, "the LLM refresh answered")

            url = live_settings.livekit_url
            b_lobby = await available_agent(orch, "agent-b")
            peers.append(b_lobby)
            t = await orch.initiate(call.call_id, "agent-a", "agent-b")
            offer = await b_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
            assert offer["payload"]["summary"]["source"] in ("llm", "llm+offline")
            assert offer["payload"]["summary"]["brief"].startswith("Caller needs help with the internet bill.")

            b = await Peer("agent-b").connect(url, orch.agent_token("agent-b", t.consult_room).token)
            peers.append(b)
            await b.wait_hears(briefing_identity(t.transfer_id), timeout=30)  # the brief, spoken
            card = await b.wait_message(lambda m: m["type"] == "transfer.summary")
            assert card["payload"]["summary"]["source"] in ("llm", "llm+offline")

            # Where each ran, as the control plane knows it (its gateway, and what the jobs reported).
            status = await wait_for(
                lambda: {s.function: s for s in orch.function_status} if len(orch.function_status) >= 3 else None,
                10,
                "the jobs' function reports",
            )
        finally:
            for p in peers:
                await p.disconnect()

    worker_ran = {(r["function"], r["where"], r["ok"]) for r in read_records(worker_records) if r["at"] >= since}
    assert ("transcribe", "local (media worker)", True) in worker_ran
    assert ("synthesize_speech", "local (media worker)", True) in worker_ran
    control_ran = [r for r in read_records(ours)]
    assert control_ran and all(r["function"] == "summarize" for r in control_ran)
    assert {r["where"] for r in control_ran} == {"local (in-process)"} and all(r["ok"] for r in control_ran)
    assert len(llm.chat_requests()) == len(control_ran)  # every LLM request came through the gateway

    assert (status["transcribe"].origin, status["transcribe"].backend) == ("media worker", "local (media worker)")
    assert (status["synthesize_speech"].origin, status["synthesize_speech"].backend) == (
        "media worker",
        "local (media worker)",
    )
    assert (status["summarize"].origin, status["summarize"].backend) == ("control plane", "local (in-process)")
    assert not any(s.fell_back for s in status.values())


async def test_a_hanging_llm_never_delays_initiate_and_b_gets_the_offline_fallback(
    live_settings, control_hub, llm, caller_line
):
    """Peers: see the module. The LLM server hangs (30 s); LLM_TIMEOUT_S is 2 s."""
    llm.chat_script = [{"delay": 30.0, "content": json.dumps(LLM_SUMMARY)}]
    async with running_orchestrator(live_settings, control_hub) as orch:
        call, caller, a = await start_call(orch, "Sarah Johnson", "agent-a")
        b_lobby = await available_agent(orch, "agent-b")
        try:
            await caller.say(*caller_line)
            await wait_for(lambda: orch.store.segments(call.call_id), 60, "the caller's words transcribed")
            await wait_for(lambda: llm.chat_requests(), 5, "the LLM refresh asked")  # and it hangs now

            started = time.monotonic()
            t = await orch.initiate(call.call_id, "agent-a", "agent-b")
            took = time.monotonic() - started
            assert took < LLM_TIMEOUT_S, f"initiate took {took:.2f}s with the LLM hanging"
            offer = await b_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
            summary = offer["payload"]["summary"]
            assert summary["source"] == "offline_fallback" and "Sarah" in summary["brief"]

            # The refresh gave up within the LLM timeout (through the gateway: its status says how long).
            st = await wait_for(
                lambda: next((s for s in orch.gateway.function_status if s.function == "summarize"), None),
                LLM_TIMEOUT_S + 3,
                "the hung refresh ended",
            )
            assert st.ok and st.duration_s <= LLM_TIMEOUT_S + 1.0
            rolling = orch.transcripts.summaries[call.call_id]
            # The gateway records its status before the refresh that awaited it resumes (a CI run looked
            # in between): wait for the rolling summary to take the answer in.
            await wait_for(lambda: rolling.last_error, 5, "the rolling summary noted the fallback")
            assert rolling.current.source == "offline_fallback"
            assert rolling.last_error == "the refresh answered offline_fallback"
            await orch.cancel(t.transfer_id, actor="agent-a")
        finally:
            for p in (caller, a, b_lobby):
                await p.disconnect()
