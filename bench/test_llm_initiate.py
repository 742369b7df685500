"""Initiate latency with and without an LLM summarizer (issue 12: "initiate latency is unchanged").

`initiate` reads the rolling summary as it stands and never waits for the LLM (README, "The transfer
never waits on the LLM"). This measures it on live calls: the caller says a line, the call job
transcribes it, the control plane's rolling summary folds it and (with an LLM) starts its refresh
through the gateway; then A initiates and the time initiate() takes is recorded, with the brief's
`source`. Three control planes, N transfers each (BENCH_N, default 10):

  offline      the offline summarizer only (no refresh)
  llm          the local OpenAI-compatible server answering after 0.5 s, initiated once it answered
  llm hanging  the same server hanging 30 s (LLM_TIMEOUT_S = 2): the refresh is in flight at initiate

Peers: the bench session's livekit-server, its media worker (live transcription with Whisper, hold
audio, the brief with piper), the control-plane endpoint, the local OpenAI-compatible server of
tests/fakes/openai_server.py, and realtime-SDK peers speaking with piper's voice.

Run: .venv/bin/python -m pytest bench/test_llm_initiate.py -s
"""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest

from functions.settings import load_settings
from functions.tts.speech import PiperSpeaker
from tests.ai.helpers import synth
from tests.fakes.openai_server import OpenAIRecorder
from tests.integration.conftest import available_agent, running_orchestrator
from tests.integration.test_gateway_live import LINE, LLM_SUMMARY  # the caller's line, a summary grounded in it
from tests.support.media_plane import start_call, wait_for

N = int(os.environ.get("BENCH_N", "10"))


def brief_source(orch, call) -> str:
    return orch.transcripts.summary_for(orch.store.get_call(call.call_id)).source


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


@pytest.mark.timeout(1800)
async def test_initiate_latency_with_and_without_an_llm(control_settings, control_hub):
    line = synth(PiperSpeaker(load_settings()), LINE)
    server = OpenAIRecorder().start()
    llm = {"summarizer_provider": "openai", "openai_base_url": server.base_url}
    configs = {
        "offline": ({}, None),
        "llm": (llm, {"delay": 0.5, "content": json.dumps(LLM_SUMMARY)}),
        "llm hanging": (llm, {"delay": 30.0, "content": json.dumps(LLM_SUMMARY)}),
    }
    results: dict[str, tuple[list[float], list[str]]] = {}
    try:
        for label, (update, step) in configs.items():
            settings = control_settings.model_copy(update={"live_transcription": True, "llm_timeout_s": 2.0, **update})
            server.chat_script = [step] * (N * 4) if step else []
            took, sources = [], []
            async with running_orchestrator(settings, control_hub) as orch:
                for i in range(N):
                    a, b = f"agent-a{i}", f"agent-b{i}"
                    call, caller, a_peer = await start_call(orch, "Sarah Johnson", a)
                    b_lobby = await available_agent(orch, b)  # a transfer's target is online and taking calls
                    try:
                        await caller.say(*line)
                        await wait_for(lambda c=call: orch.store.segments(c.call_id), 60, "the line transcribed")
                        if label == "llm":  # a call long enough for the LLM to have answered once
                            await wait_for(lambda c=call: brief_source(orch, c).startswith("llm"), 10, "the LLM")
                        t0 = time.monotonic()
                        t = await orch.initiate(call.call_id, a, b)
                        took.append((time.monotonic() - t0) * 1000)
                        sources.append(brief_source(orch, call))
                        await orch.cancel(t.transfer_id, actor=a)
                    finally:
                        for p in (caller, a_peer, b_lobby):
                            await p.disconnect()
                        await orch.end_call(call.call_id, actor="bench")
            results[label] = (took, sources)
    finally:
        server.stop()
    print(f"\ninitiate() with and without an LLM summarizer, {N} live calls each (2-core machine, one worker)\n")
    print("| control plane | initiate p50 ms | p95 ms | max ms | brief sources |\n|---|---|---|---|---|")
    for label, (took, sources) in results.items():
        counts = ", ".join(f"{s} {sources.count(s)}" for s in sorted(set(sources)))
        print(f"| {label} | {statistics.median(took):.0f} | {pct(took, 0.95):.0f} | {max(took):.0f} | {counts} |")
    for label, (took, _) in results.items():
        assert len(took) == N, label
