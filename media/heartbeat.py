"""The worker's heartbeat to the control planes it serves: every HEARTBEAT_S, the jobs it runs.

LiveKit keeps the participant of a job whose process died (a `kill -9`, an OOM, a lost machine)
until its 15 s ping timeout, and it tells nobody when a worker goes away. The heartbeat lets the
control plane notice within WORKER_SILENT_S, remove the ghost participant and dispatch the job
again, so a caller on hold hears a gap of seconds, not a silent quarter-minute.

It runs in the worker's main process (which knows every job of its job processes), one POST per
control plane per beat, whatever the number of calls. Best effort: a beat that fails is logged once
and the next one is sent on time.

Beats alone cannot tell a dead worker from a starved one (both are late), so the worker also holds
one liveness connection per control plane (ALIVE_PATH): a request whose body never ends while the
worker lives. The kernel closes it the moment the process dies, and the control plane takes that as
the worker gone at once; while it is open, late beats only mean "busy" (WORKER_STUCK_S). A clean
stop says goodbye first, then ends the bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable

import aiohttp

from functions.media_protocol import (
    ALIVE_KEEPALIVE_S,
    ALIVE_PATH,
    ALIVE_ROTATE_S,
    HEARTBEAT_S,
    INTERNAL_PATH,
    JobEnvelope,
    JobRef,
    ReportEnvelope,
    WorkerHeartbeat,
    internal_token,
)

log = logging.getLogger(__name__)


def job_ref(metadata: str, room: str) -> tuple[str, JobRef] | None:
    """(control URL, the job) from a running job's dispatch metadata; None if it is not one of ours."""
    try:
        spec = JobEnvelope.model_validate_json(metadata or "").job
    except ValueError:
        return None
    return spec.control_url, JobRef(room=room, identity=spec.identity)


class Heartbeat:
    def __init__(
        self,
        jobs: Callable[[], Iterable[tuple[str, str]]],
        api_secret: str,
        *,
        interval_s: float = HEARTBEAT_S,
        keepalive_s: float = ALIVE_KEEPALIVE_S,
        rotate_s: float = ALIVE_ROTATE_S,
    ) -> None:
        """`jobs()` gives (dispatch metadata, room name) of every running job."""
        self.worker_id = f"worker-{uuid.uuid4().hex[:12]}"
        self._jobs = jobs
        self._headers = {"Authorization": f"Bearer {internal_token(api_secret)}"}
        self._interval = interval_s
        self._known: set[str] = set()  # control URLs with jobs at the last beat
        self._ever: set[str] = set()  # every control URL beaten to: each gets the goodbye
        self._failing: set[str] = set()  # logged once per outage, not twice a second
        self._keepalive_s = keepalive_s
        self._rotate_s = rotate_s
        self._held: set[str] = set()  # control URLs whose liveness connection is open now
        self._streams: dict[str, asyncio.Task] = {}  # control URL → the task holding its connection
        self._ending = asyncio.Event()

    def beats(self, stopping: bool = False) -> dict[str, WorkerHeartbeat]:
        by_url: dict[str, list[JobRef]] = defaultdict(list)
        for metadata, room in self._jobs():
            if ref := job_ref(metadata, room):
                by_url[ref[0]].append(ref[1])
        # A control plane whose last job ended hears an empty beat: its jobs are gone, not its worker.
        urls = set(by_url) | (self._ever if stopping else self._known)
        self._known = set(by_url)
        self._ever |= urls
        return {
            url: WorkerHeartbeat(worker_id=self.worker_id, jobs=by_url[url], stopping=stopping, held=url in self._held)
            for url in urls
        }

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2.0)  # a busy control plane answers late, not never
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = asyncio.get_running_loop().time()
                beats = self.beats()
                for url in self._ever - set(self._streams):
                    # Its own task and session: it outlives this loop until goodbye() has been said.
                    self._streams[url] = asyncio.ensure_future(self._hold(url))
                await self._send_all(session, beats)
                await asyncio.sleep(max(0.0, self._interval - (asyncio.get_running_loop().time() - started)))

    async def goodbye(self) -> None:
        """A clean stop: the control planes need not wait to know (bounded, 1 s for the beats, 1 s
        for the liveness connections, which end only after the goodbye beat: not taken as a death)."""
        beats = self.beats(stopping=True)
        if beats:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._send_all(session, beats), 1.0)
        self._ending.set()
        if self._streams:
            _done, late = await asyncio.wait(self._streams.values(), timeout=1.0)
            for task in late:
                task.cancel()

    # --- the liveness connection -----------------------------------------------------------------
    async def _hold(self, url: str) -> None:
        """The liveness connection to `url`, opened again when it ends, until the worker stops."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0)  # a body that never ends
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._ending.is_set():
                try:
                    async with session.post(
                        url.rstrip("/") + ALIVE_PATH,
                        params={"worker_id": self.worker_id},
                        data=self._trickle(url),
                        headers=self._headers,
                    ) as r:
                        if r.status >= 300:
                            raise aiohttp.ClientResponseError(r.request_info, (), status=r.status)
                except (aiohttp.ClientError, TimeoutError) as e:
                    log.debug("liveness connection to %s: %s", url, e)
                finally:
                    self._held.discard(url)
                with contextlib.suppress(TimeoutError):  # not a tight loop while the control plane is away
                    await asyncio.wait_for(self._ending.wait(), self._interval * 2)

    async def _trickle(self, url: str) -> AsyncIterator[bytes]:
        """The connection's body: a byte every `keepalive_s` (no idle timeout closes it); it ends after
        `rotate_s` (the next one is opened: the body stays small) or when the worker stops."""
        self._held.add(url)  # the body is being sent: the connection is up
        loop = asyncio.get_running_loop()
        end = loop.time() + self._rotate_s
        while not self._ending.is_set() and loop.time() < end:
            yield b"."
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ending.wait(), min(self._keepalive_s, max(0.0, end - loop.time())))

    async def _send_all(self, session: aiohttp.ClientSession, beats: dict[str, WorkerHeartbeat]) -> None:
        await asyncio.gather(*(self._send(session, url, beat) for url, beat in beats.items()))

    async def _send(self, session: aiohttp.ClientSession, url: str, beat: WorkerHeartbeat) -> None:
        body = ReportEnvelope(report=beat).model_dump(mode="json")
        try:
            async with session.post(url.rstrip("/") + INTERNAL_PATH, json=body, headers=self._headers) as r:
                if r.status >= 300:
                    raise aiohttp.ClientResponseError(r.request_info, (), status=r.status, message=await r.text())
            if url in self._failing:
                self._failing.discard(url)
                log.info("heartbeat to %s delivered again", url)
        except (aiohttp.ClientError, TimeoutError) as e:
            if url not in self._failing:
                self._failing.add(url)
                log.warning("heartbeat to %s not delivered: %s", url, e)
