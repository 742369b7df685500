"""The media-plane worker: a livekit-agents `AgentServer` registered as MEDIA_AGENT_NAME, running the
call and consult jobs the control plane dispatches explicitly (AgentDispatchService).

Each job runs in a process of livekit-agents' job pool (`JobExecutorType.PROCESS`), prewarmed by
`prewarm_process` (cheap: the heavy imports are preloaded in the forkserver), so a crash or a stuck SDK in one call
costs that call's media only. Jobs as threads of one process were tried first and measured: every
SDK event of the process is offered to every room in it, and with five transcribed calls starting
at once the SDK's connects timed out and an FFI panic took every call of the worker down. The
server sees the worker's load as running jobs / WORKER_MAX_JOBS and dispatches elsewhere when full.

    worker = MediaWorker(settings)
    await worker.run()        # until aclose()

`wrap_backend` (a picklable callable, e.g. a `functools.partial` of a module-level function: it
travels to the job processes) wraps every backend of the jobs' gateways; the tests record with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, JobContext, JobExecutorType, JobProcess, JobRequest, get_job_context
from livekit.agents.utils import http_context

from functions.gateway import Backend, LocalBackend, make_gateway
from functions.media_protocol import CallJob, JobEnvelope
from functions.services import build_services
from functions.settings import Settings
from media import model_host
from media.heartbeat import Heartbeat
from media.jobs import JobDeps, load_hold_clip, run_job
from media.priority import below_the_control_plane
from media.slots import ConnectSlots

log = logging.getLogger(__name__)


# Imported once in the forkserver that forks the job processes: each job process then starts with
# them in memory (copy-on-write) instead of importing them itself. Imports only: nothing here starts
# a thread or loads a model (neither would survive the fork).
PRELOAD_MODULES = [
    "numpy",
    "onnxruntime",
    "piper",
    "faster_whisper",
    "functions.gateway",
    "functions.services",
    "functions.tts.speech",
    "functions.stt.transcription",
    "media.jobs",
    "media.model_host",
]


def prewarm_process(
    settings: Settings,
    hold_clip_path: Path,
    proc: JobProcess,
    *,
    wrap_backend: Callable[[Backend], Backend] | None = None,
) -> None:
    """Runs once in every job process before it takes a job, so it must be cheap: process start-up
    is what limits how fast a worker takes new calls (measured: 2.5-11 s per process on a busy
    2-core machine when the voice was loaded here). The hold clip is read from the file the worker
    decoded it to; the voice and Whisper live in the worker's model host (`media.model_host`),
    loaded once per worker. (With STT_PROVIDER=openai or on Modal the host only forwards.)"""
    # Below the control plane and livekit-server, and below this worker's main process (its heartbeat).
    below_the_control_plane(settings.worker_nice)
    # The job's HTTP session parses the CA bundle once per process (cached by livekit-agents): here,
    # not on the job's loop, where it blocked a starting job for 0.1-0.7 s (its log said so).
    http_context._create_ssl_context()
    services = build_services(settings)
    pool = ThreadPoolExecutor(max_workers=settings.worker_model_threads or 2)
    local = model_host.HostBackend(lambda: get_job_context().inference_executor, LocalBackend(services, pool))
    proc.userdata["deps"] = JobDeps(
        gateway=make_gateway(settings, services, local=local, wrap_backend=wrap_backend, origin="media worker"),
        api_secret=settings.livekit_api_secret.get_secret_value(),
        hold_clip=np.load(hold_clip_path),
        slots=ConnectSlots(hold_clip_path.parent, settings.worker_connect_slots),
        qa_timeout_s=settings.qa_timeout_s + 1.0,  # the LLM's own bound, plus the gateway's hop
    )


async def on_request(req: JobRequest) -> None:
    try:
        spec = JobEnvelope.model_validate_json(req.job.metadata or "").job
    except ValueError as e:
        log.error("rejecting a job with unreadable metadata in %s: %s", req.room.name, e)
        await req.reject()
        return
    name = "Call media" if isinstance(spec, CallJob) else "Transfer briefing"
    await req.accept(identity=spec.identity, name=name, attributes={"role": "service"})


async def entrypoint(ctx: JobContext) -> None:
    spec = JobEnvelope.model_validate_json(ctx.job.metadata).job
    deps: JobDeps = ctx.proc.userdata["deps"]
    try:
        await run_job(ctx, spec, deps)
    except rtc.ConnectError as e:  # the room ended before its job joined (a short call): nothing to do
        log.info("job for %s did not join: %s", ctx.room.name, e)
    finally:
        ctx.shutdown("room closed")


class MediaWorker:
    def __init__(self, settings: Settings, *, wrap_backend: Callable[[Backend], Backend] | None = None) -> None:
        self.settings = settings
        self._tmp = tempfile.TemporaryDirectory(prefix="media-worker-")
        self.hold_clip_path = Path(self._tmp.name) / "hold.npy"
        self.server = AgentServer(
            job_executor_type=JobExecutorType.PROCESS,
            ws_url=settings.livekit_url,
            api_key=settings.livekit_api_key,
            api_secret=settings.livekit_api_secret.get_secret_value(),
            setup_fnc=functools.partial(prewarm_process, settings, self.hold_clip_path, wrap_backend=wrap_backend),
            preload_modules=PRELOAD_MODULES,
            load_fnc=self.load,
            load_threshold=1.0,  # `load` is already jobs / max: full means full
            num_idle_processes=settings.worker_idle_jobs,  # prewarmed processes ready for the next jobs
            initialize_process_timeout=60.0,  # generous: a busy 2-core machine starts processes slowly
            shutdown_process_timeout=5.0,  # bounded shutdown: seconds, not minutes
            drain_timeout=5,
            job_memory_warn_mb=1500,
            port=0,  # the worker's health port: any free one, so several workers share a machine
            log_level="INFO",
        )
        self.server.rtc_session(entrypoint, agent_name=settings.media_agent_name, on_request=on_request)
        self.heartbeat = Heartbeat(
            lambda: [(j.job.metadata, j.job.room.name) for j in self.server.active_jobs],
            settings.livekit_api_secret.get_secret_value(),
        )
        self._beating: asyncio.Task | None = None

    @property
    def active_jobs(self) -> int:
        return len(self.server.active_jobs)

    def load(self) -> float:
        return min(1.0, self.active_jobs / self.settings.worker_max_jobs)

    async def run(self) -> None:
        # The model host (livekit-agents' inference process) loads and checks the models before the
        # worker registers; a broken install stops the worker there.
        model_host.register()
        np.save(self.hold_clip_path, await load_hold_clip())  # decoded once per worker, not per job process
        log.info("media worker registering as %r with %s", self.settings.media_agent_name, self.settings.livekit_url)
        self._beating = asyncio.ensure_future(self.heartbeat.run())
        await self.server.run(devmode=False)

    async def aclose(self) -> None:
        if self._beating:
            self._beating.cancel()
            await self.heartbeat.goodbye()  # before the jobs leave: their departures are not a crash
        await self.server.aclose()
        self._tmp.cleanup()
