"""The media-plane worker: a livekit-agents `AgentServer` registered as `MEDIA_AGENT`, running the
call and consult jobs the control plane dispatches explicitly (AgentDispatchService).

Jobs run as threads of this process (`JobExecutorType.THREAD`): every job shares one set of
models (Whisper, piper) and one bounded pool for their CPU work, sized to the cores, instead of a
process and a model copy per call. The server sees this worker's load as jobs / WORKER_MAX_JOBS,
and dispatches elsewhere when it is full.

    worker = MediaWorker(settings)
    await worker.run()        # until aclose()
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from livekit.agents import AgentServer, JobContext, JobExecutorType, JobRequest

from functions.gateway import make_gateway
from functions.media_protocol import MEDIA_AGENT, CallJob, JobEnvelope, briefing_identity, media_identity
from functions.models import SpeechRequest, TranscribeRequest
from functions.services import Services, build_services
from functions.settings import Settings
from media.jobs import JobDeps, load_hold_clip, run_call_job, run_consult_job

log = logging.getLogger(__name__)


class MediaWorker:
    def __init__(self, settings: Settings, *, services: Services | None = None) -> None:
        self.settings = settings
        self.services = services or build_services(settings)
        # One pool for every job's model work: no thread oversubscription on a small machine.
        self.pool = ThreadPoolExecutor(max_workers=settings.worker_model_threads or os.cpu_count() or 2)
        self.gateway = make_gateway(settings, self.services, executor=self.pool)
        self.hold_clip = np.zeros(0, dtype="<i2")  # decoded at run(), shared (read-only) by every call job
        self._jobs = 0
        self._jobs_lock = threading.Lock()
        self.server = AgentServer(
            job_executor_type=JobExecutorType.THREAD,
            ws_url=settings.livekit_url,
            api_key=settings.livekit_api_key,
            api_secret=settings.livekit_api_secret.get_secret_value(),
            load_fnc=self.load,
            load_threshold=1.0,  # `load` is already jobs / max: full means full
            num_idle_processes=settings.worker_idle_jobs,  # threads ready for the next jobs (cheap)
            shutdown_process_timeout=5.0,  # bounded shutdown: seconds, not minutes
            drain_timeout=5,
            port=0,  # the worker's health port: any free one, so several workers share a machine
            log_level="INFO",
        )
        self.server.rtc_session(self._entrypoint, agent_name=MEDIA_AGENT, on_request=self._on_request)

    @property
    def active_jobs(self) -> int:
        return self._jobs

    def load(self) -> float:
        return min(1.0, self._jobs / self.settings.worker_max_jobs)

    def prewarm(self) -> None:
        """Load the models before registering, so the first call does not pay for it."""
        from functions.speech import synthesize_speech
        from functions.transcription import transcribe

        if self.settings.live_transcription:
            transcribe(TranscribeRequest(audio=b"\0" * 16000, encoding="pcm_s16le", sample_rate=16000), self.services)
        synthesize_speech(SpeechRequest(text="Ready."), self.services)

    async def run(self) -> None:
        await asyncio.to_thread(self.prewarm)
        self.hold_clip = await load_hold_clip()
        log.info("media worker registering as %r with %s", MEDIA_AGENT, self.settings.livekit_url)
        await self.server.run(devmode=False)

    async def aclose(self) -> None:
        await self.server.aclose()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _on_request(self, req: JobRequest) -> None:
        try:
            spec = JobEnvelope.model_validate_json(req.job.metadata or "").job
        except ValueError as e:
            log.error("rejecting a job with unreadable metadata in %s: %s", req.room.name, e)
            await req.reject()
            return
        if isinstance(spec, CallJob):
            await req.accept(identity=media_identity(spec.call_id), name="Call media", attributes={"role": "service"})
        else:
            identity = briefing_identity(spec.transfer_id)
            await req.accept(identity=identity, name="Transfer briefing", attributes={"role": "service"})

    async def _entrypoint(self, ctx: JobContext) -> None:
        spec = JobEnvelope.model_validate_json(ctx.job.metadata).job
        deps = JobDeps(
            gateway=self.gateway,
            api_secret=self.settings.livekit_api_secret.get_secret_value(),
            hold_clip=self.hold_clip,
        )
        with self._jobs_lock:
            self._jobs += 1
        try:
            if isinstance(spec, CallJob):
                await run_call_job(ctx, spec, deps)
            else:
                await run_consult_job(ctx, spec, deps)
        finally:
            with self._jobs_lock:
                self._jobs -= 1
            ctx.shutdown("room closed")
