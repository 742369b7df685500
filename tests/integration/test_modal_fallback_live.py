"""FUNCTIONS_BACKEND=modal with Modal unreachable (no token anywhere; none is ever set): a live call
still works on the local fallback, at once, and the status the Calls tab shows says each function
ran locally because it fell back, and why.

Peers: the session's real livekit-server and control hub; a real media worker of this module's own
(`worker.py` with FUNCTIONS_BACKEND=modal, no Modal token in its environment), registered under an
agent name of its own so the session's worker takes none of these jobs; real-SDK peers speaking
with piper's voice. Modal itself is not reachable from here, and the gateway never tries: without a
token it falls back before contacting anything.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from functions.gateway import modal_token_problem
from functions.media_protocol import briefing_identity
from functions.tts.speech import PiperSpeaker
from tests.ai.helpers import synth
from tests.integration.conftest import available_agent, running_orchestrator
from tests.support.media_plane import agent_name, own_worker, start_call, wait_for, worker_env
from tests.support.peer import Peer
from ui.backend import UiBackend

pytestmark = [pytest.mark.integration, pytest.mark.ai]

LINE = "Hi, my name is Sarah Johnson and I need help with my internet bill."
MODAL_TIMEOUT_S = 30.0  # what a fallback that waited for Modal would take, per call


@pytest.fixture(scope="module")
def modal_worker(livekit_server, tmp_path_factory):
    if modal_token_problem() is None:
        pytest.skip("a Modal token is configured here; this test is about having none")
    name = agent_name()
    missing = tmp_path_factory.mktemp("modal") / "no-such-modal.toml"  # not ~/.modal.toml either
    env = worker_env(name, FUNCTIONS_BACKEND="modal", MODAL_FALLBACK_LOCAL="true", MODAL_CONFIG_PATH=str(missing))
    worker = own_worker(livekit_server, "worker-modal", env)
    yield name
    worker.stop()


@pytest.fixture
def modal_settings(control_settings, modal_worker):
    return control_settings.model_copy(
        update={
            "media_agent_name": modal_worker,
            "live_transcription": True,
            "functions_backend": "modal",
            "modal_fallback_local": True,
            "modal_timeout_s": MODAL_TIMEOUT_S,
        }
    )


async def test_a_live_call_runs_on_the_local_fallback_and_the_status_says_why(modal_settings, control_hub):
    """Peers: see the module."""
    from functions.settings import load_settings

    line = synth(PiperSpeaker(load_settings()), LINE)
    async with running_orchestrator(modal_settings, control_hub) as orch:
        started = time.monotonic()
        call, caller, a = await start_call(orch, "Sarah Johnson", "agent-a")
        url = modal_settings.livekit_url
        peers = [caller, a]
        try:
            await caller.say(*line)
            segs = await wait_for(lambda: orch.store.segments(call.call_id), 60, "the caller's words transcribed")
            assert "sarah" in segs[0].text.lower() and "bill" in segs[0].text.lower()

            b_lobby = await available_agent(orch, "agent-b")
            peers.append(b_lobby)
            t = await orch.initiate(call.call_id, "agent-a", "agent-b")
            offer = await b_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
            assert "Sarah Johnson" in offer["payload"]["summary"]["brief"]
            b = await Peer("agent-b").connect(url, orch.agent_token("agent-b", t.consult_room).token)
            peers.append(b)
            await b.wait_hears(briefing_identity(t.transfer_id), timeout=30)  # the brief, spoken
            # Every function fell back at once: no call waited MODAL_TIMEOUT_S for Modal.
            assert time.monotonic() - started < MODAL_TIMEOUT_S

            want = {"transcribe", "summarize", "synthesize_speech"}
            await wait_for(lambda: want <= {s.function for s in orch.function_status}, 10, "the function reports")
            ui = UiBackend(SimpleNamespace(orchestrator=orch, gateway=orch.gateway))
            rows = {r["function"]: r for r in ui.function_status()}
            await orch.cancel(t.transfer_id, actor="agent-a")
        finally:
            for p in peers:
                await p.disconnect()

    expected = {
        "transcribe": ("local (media worker)", "media worker"),
        "synthesize_speech": ("local (media worker)", "media worker"),
        "summarize": ("local (in-process)", "control plane"),
    }
    for function, (backend, origin) in expected.items():
        row = rows[function]
        assert (row["backend"], row["origin"], row["kind"]) == (backend, origin, "local"), row
        assert row["fell_back"] and row["ok"], row
        assert "FUNCTIONS_BACKEND=modal, but Modal is not configured: no Modal token" in row["reason"], row
        assert row["at"] > 0 and row["duration_s"] < 20, row
