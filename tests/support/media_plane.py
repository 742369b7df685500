"""A media worker of a test's own, on the session's real livekit-server (its control plane:
`tests.integration.conftest.running_orchestrator`).

The worker registers under an agent name of its own (MEDIA_AGENT_NAME), and the test's orchestrator
dispatches its jobs to that name only, so the session's worker never takes them: a test can run the
real media plane with other settings (FUNCTIONS_BACKEND=modal) or with its gateway's backends wrapped
(tests/support/recording_worker.py)."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from control.transfer import TransferOrchestrator
from functions.media_protocol import media_identity
from functions.models import Call
from tests.conftest import WorkerProcess
from tests.support.peer import Peer


def worker_env(agent_name: str, **overrides: str) -> dict[str, str]:
    """This process's environment for a worker of its own: its agent name, local models (no OpenAI),
    live transcription on, and `overrides`. No Modal token is ever added (a removed one stays removed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_TOKEN_", "OPENAI_"))}
    env.update(MEDIA_AGENT_NAME=agent_name, LIVE_TRANSCRIPTION="true", STT_PROVIDER="whisper", TTS_PROVIDER="piper")
    env.update(overrides)
    return env


def own_worker(livekit_server, name: str, env: dict[str, str], records: Path | None = None) -> WorkerProcess:
    """`worker.py` (or, with `records`, the recording worker) registered under env's MEDIA_AGENT_NAME."""
    command = [sys.executable, "-m", "tests.support.recording_worker", str(records)] if records else None
    return WorkerProcess(livekit_server, name=name, command=command, env=env).wait_registered()


def agent_name() -> str:
    return f"wt-test-{uuid.uuid4().hex[:8]}"


async def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Poll `predicate` (plain or async) until it is truthy; its value, or an assertion after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := await _value(predicate())):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        await asyncio.sleep(every)
    return value


async def _value(result: object) -> object:
    return await result if inspect.isawaitable(result) else result


async def start_call(orch: TransferOrchestrator, name: str, agent: str) -> tuple[Call, Peer, Peer]:
    """A call with a caller and agent A who can speak (`Peer.say`), the call job listening to the caller."""
    url = orch.settings.livekit_url
    call = await orch.start_call(name, agent_identity=agent)
    caller, a = Peer(call.caller_identity, voice=True), Peer(agent, voice=True)
    await caller.connect(url, orch.caller_token(call.call_id, call.caller_identity).token)
    await a.connect(url, orch.agent_token(agent, call.room).token)
    job = media_identity(call.call_id)
    await wait_for(lambda: (job, call.caller_identity) in orch.media.listening, 45, f"{job} listening to the caller")
    return call, caller, a
