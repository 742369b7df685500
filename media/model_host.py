"""The worker's model host: the piper voice and the Whisper model loaded once per worker, speaking
and transcribing for every job of it.

livekit-agents runs one inference process per worker for exactly this (its turn detector uses it):
models registered as an inference runner load there once, and every job process of the worker
calls them through the worker's IPC (`ctx.inference_executor.do_inference`). Loading the voice in
each consult's job process instead cost 2-24 s of CPU per consult on a busy 2-core machine, and B's
brief came late (measured in CI); here it loads once, before the worker registers. Whisper too:
one model with a one-thread replica per core (`WORKER_MODEL_THREADS`) serves every call of the
worker, as many utterances at once as there are replicas, instead of a model in each call's process
(~150 MB a call, each padding every utterance to Whisper's 30 s window: bench/live_transcription.py
measures both).

    register()                                   # in the worker's main process, before AgentServer.run
    backend = HostBackend(lambda: get_job_context().inference_executor)   # in a job process
    await backend.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="..."))

Requests and replies use the same wire format as Modal (`functions.gateway.to_wire`), and a
function's `ServiceError` comes back as the same class with the same `retryable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from livekit.agents.inference_runner import _InferenceRunner
from livekit.agents.ipc.inference_executor import InferenceExecutor
from pydantic import BaseModel

from functions import errors
from functions.errors import ProviderError, ProviderTimeout, ServiceError
from functions.gateway import ENTRY_POINTS, EntryPoint, from_wire, to_wire
from functions.models import SpeechRequest, TranscribeRequest
from functions.settings import Settings
from functions.stt.protocol import Transcriber
from functions.stt.transcription import LoadAwareTranscriber, WhisperTranscriber, make_transcriber
from media.priority import below_the_control_plane

log = logging.getLogger(__name__)

METHOD = "warm_transfer.functions"
HOSTED = frozenset({"synthesize_speech", "transcribe"})  # what the host runs; the rest runs in the job
HOST_NICE = 10  # the model host's CPU priority, this much below the job processes (WORKER_NICE)
HOST_TIMEOUT_S = 30.0  # one brief's synthesis, queued behind at most a few others


class HostCall(BaseModel):
    name: str
    request: dict[str, Any]


class HostFailure(BaseModel):
    kind: str  # the ServiceError subclass, re-raised as the same class in the job
    message: str
    retryable: bool


class HostReply(BaseModel):
    response: dict[str, Any] | None = None
    error: HostFailure | None = None


class FunctionsRunner(_InferenceRunner):
    """Runs in the worker's inference process. Its settings come from the environment the worker
    was started with (the process is started by livekit-agents, which passes no arguments)."""

    INFERENCE_METHOD = METHOD

    def initialize(self) -> None:
        """Load and check the models before the worker registers: a broken install stops the worker
        here with its own message, not in the first caller's job."""
        from functions.services import build_services
        from functions.settings import load_settings

        try:
            settings = load_settings()
            # Below the job processes: a caller's hold audio and live audio must not wait for a brief
            # being synthesized (the scheduler gives the model host what the audio leaves).
            below_the_control_plane(settings.worker_nice + HOST_NICE)
            # One Whisper for the worker, a replica of one thread per core: utterances of different
            # calls run side by side instead of queueing behind one (bench/live_transcription.py).
            replicas = settings.worker_model_threads or os.cpu_count() or 2
            model = settings.live_whisper_model or settings.whisper_model_path
            host = settings.model_copy(
                update={
                    "whisper_cpu_threads": 1,
                    "whisper_workers": replicas,
                    "whisper_model_path": model,
                    "whisper_context_s": settings.live_whisper_context_s,
                }
            )
            self.services = build_services(host, transcriber=live_transcriber(settings, host, replicas))
            ENTRY_POINTS["synthesize_speech"].run(SpeechRequest(text="Ready."), self.services)  # loads the voice
            if settings.live_transcription:  # loads Whisper: the first caller's first words are not late
                silence = TranscribeRequest(audio=b"\0" * 16000, encoding="pcm_s16le", sample_rate=16000)
                ENTRY_POINTS["transcribe"].run(silence, self.services)
                if isinstance(self.services.transcriber, LoadAwareTranscriber):
                    self.services.transcriber.warm()
        except Exception as e:
            log.error("the media worker's models do not load: %s", e)
            # Not an Exception: livekit-agents would log it and carry on with a broken host.
            raise SystemExit(f"model host: {e}") from e

    def run(self, data: bytes) -> bytes:
        try:
            call = HostCall.model_validate_json(data)
            ep = ENTRY_POINTS[call.name]
            result = ep.run(from_wire(ep.request, call.request), self.services)
            return HostReply(response=to_wire(result)).model_dump_json().encode()
        except ServiceError as e:
            failure = HostFailure(kind=type(e).__name__, message=e.message, retryable=e.retryable)
        except Exception as e:  # a bug or an SDK error nobody converted: still an answer, never a hang
            log.exception("model host: %s failed", data[:80])
            failure = HostFailure(kind="ProviderError", message=f"{type(e).__name__}: {e}", retryable=False)
        return HostReply(error=failure).model_dump_json().encode()


def live_transcriber(settings: Settings, host: Settings, replicas: int) -> Transcriber:
    """The live captions' transcriber: base (WHISPER_MODEL_PATH) while the worker keeps up, tiny.en
    (LIVE_WHISPER_FAST_MODEL) for utterances that queued for a core. tiny.en alone keeps up with 10
    calls on 2 cores but misheard a caller's name on WebRTC audio in CI ("Sarah" as "Eric"); base
    alone falls behind at about 5 (bench/live_transcription.py)."""
    accurate = make_transcriber(host)
    fast_model = settings.live_whisper_fast_model
    if not fast_model or fast_model == host.whisper_model_path or not isinstance(accurate, WhisperTranscriber):
        return accurate
    fast = WhisperTranscriber(
        host.model_copy(
            update={"whisper_model_path": fast_model, "whisper_context_s": settings.live_whisper_fast_context_s}
        )
    )
    return LoadAwareTranscriber(accurate, fast, slots=replicas, fast_after_s=settings.live_whisper_fast_after_s)


def register() -> None:
    """Register the runner (main thread, once per process, before the AgentServer runs)."""
    if METHOD not in _InferenceRunner.registered_runners:
        _InferenceRunner.register_runner(FunctionsRunner)


def _error(failure: HostFailure) -> ServiceError:
    cls = getattr(errors, failure.kind, None)
    if not (isinstance(cls, type) and issubclass(cls, ServiceError)):
        cls = ProviderError
    return cls(failure.message, retryable=failure.retryable)


class HostBackend:
    """A gateway backend for the job processes: the entry points in HOSTED run in the worker's model
    host, the others in `rest` (the job's own LocalBackend)."""

    kind = "local"
    label = "local (media worker)"

    def __init__(
        self,
        executor: Callable[[], InferenceExecutor],
        rest: Any,
        *,
        timeout_s: float = HOST_TIMEOUT_S,
    ) -> None:
        self.executor = executor  # called per request: the job context exists only inside a job
        self.rest = rest
        self.timeout_s = timeout_s

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel:
        if ep.name not in HOSTED:
            return await self.rest.call(ep, request)
        ep.check(request)
        payload = HostCall(name=ep.name, request=to_wire(request)).model_dump_json().encode()
        try:
            raw = await asyncio.wait_for(self.executor().do_inference(METHOD, payload), self.timeout_s)
        except TimeoutError as e:
            raise ProviderTimeout(
                f"the media worker's model host did not answer {ep.name} in {self.timeout_s:g}s"
            ) from e
        except RuntimeError as e:  # the host process is gone, or livekit-agents refused the request
            raise ProviderError(f"the media worker's model host failed {ep.name}: {e}", retryable=True) from e
        reply = HostReply.model_validate_json(raw or b"{}")
        if reply.error is not None:
            raise _error(reply.error)
        if reply.response is None:
            raise ProviderError(f"the media worker's model host returned nothing for {ep.name}")
        return from_wire(ep.response, reply.response)
