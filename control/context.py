"""The control plane's parts, built once at startup and shared by the UI, the HTTP API and the
webhooks: settings, the embedded LiveKit server (when no LIVEKIT_URL is configured) and the media
workers it starts, services, the functions gateway (local or Modal), store, rooms, the
orchestrator with its phone leg (Twilio), and the event bus its notifications go through in
process (`control.bus`; who follows it: `control.wiring`, the UI's handler given as `followers`).

Nothing here joins a room or touches audio: that is the media plane (worker.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

from control.auth import Auth
from control.bus import EventBus
from control.instance_lock import InstanceLock
from control.livekit_server import EmbeddedLiveKit
from control.phone_bridge import TwilioPhoneLeg
from control.rooms import Rooms
from control.store import Store
from control.transfer import TransferOrchestrator
from control.wiring import Follower
from control.workers import WorkerProcesses
from functions.background import Background
from functions.errors import ServiceError
from functions.gateway import Backend, FunctionsGateway, make_gateway
from functions.media_protocol import WEBHOOK_PATH
from functions.services import Services, build_services
from functions.settings import Settings

log = logging.getLogger(__name__)
WATCH_EVERY_S = 0.5  # how often the embedded server and the workers are checked
STOP_CALLS_S = 3.0  # a clean stop ends the open calls (embedded server) within this, then goes on
LIVEKIT_DIED = "the LiveKit server stopped unexpectedly and its rooms were lost"
APP_STOPPED = "the service was stopped"


def control_url(settings: Settings) -> str:
    """Where the LiveKit server and the workers reach the control plane."""
    if settings.control_url:
        return settings.control_url.rstrip("/")
    host = settings.app_host if settings.app_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.app_port}"


def _loopback(host: str) -> bool:
    try:
        return all(info[4][0].startswith("127.") or info[4][0] == "::1" for info in socket.getaddrinfo(host, None))
    except OSError:
        return False


class AppContext:
    """Filled by `start()` inside the server's event loop (LiveKit clients need one)."""

    def __init__(
        self,
        settings: Settings,
        *,
        wrap_backend: Callable[[Backend], Backend] | None = None,
        store_connection: type[sqlite3.Connection] = sqlite3.Connection,
        **providers: object,
    ) -> None:
        """`providers` replace the services' providers; `wrap_backend` wraps the gateway's backends and
        `store_connection` is the class of the SQLite connections (both for tests)."""
        self.base_settings = settings
        self._store_connection = store_connection
        self._providers = providers
        self._wrap_backend = wrap_backend
        self.settings: Settings = settings
        self.livekit: EmbeddedLiveKit | None = None
        self.workers: WorkerProcesses | None = None
        self.services: Services | None = None
        self.store: Store | None = None
        self.rooms: Rooms | None = None
        self.orchestrator: TransferOrchestrator | None = None
        self.auth: Auth | None = None
        self.phone: TwilioPhoneLeg | None = None
        self.gateway: FunctionsGateway | None = None
        # Exists before start, so what is built before (the UI) can subscribe; the orchestrator publishes.
        self.bus = EventBus()
        # The app's own handlers of the bus (the UI's, from app.create_app): subscribed by control.wiring
        # with the orchestrator's parts when the orchestrator is built.
        self.followers: list[Follower] = []
        self._watch = Background()
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the control plane runs on
        self.instance_lock = InstanceLock(settings.data_dir)
        self.livekit_restarts = 0

    @property
    def started(self) -> bool:
        return self.orchestrator is not None

    def sinks(self) -> list[TransferOrchestrator]:
        """Who hears LiveKit webhooks and media reports (see control.control_routes)."""
        return [self.orchestrator] if self.orchestrator else []

    async def start(self) -> AppContext:
        """Everything, in order; a failure on the way stops what was started (no orphan server)."""
        self.loop = asyncio.get_running_loop()
        # Before anything else: a second control plane on this DATA_DIR would start a server of its own.
        self.instance_lock.acquire()
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> AppContext:
        settings = self.base_settings
        livekit_state: Path | None = None
        if not settings.livekit_url:
            livekit_state = settings.data_dir / "livekit"
            self.livekit = await asyncio.to_thread(
                EmbeddedLiveKit(
                    settings, webhook_url=control_url(settings) + WEBHOOK_PATH, state_dir=livekit_state
                ).start
            )
            settings = self.livekit.settings_for(settings)
            log.info("embedded LiveKit server at %s (pid %s)", settings.livekit_url, self.livekit.pid)
            if not _loopback(settings.app_host):
                log.warning(
                    "APP_HOST=%s is reachable from other machines, but the embedded LiveKit server listens on "
                    "127.0.0.1 only: remote browsers will get no audio. Set LIVEKIT_URL (with LIVEKIT_API_KEY "
                    "and LIVEKIT_API_SECRET) to a LiveKit server they can reach.",
                    settings.app_host,
                )
        else:
            log.info(
                "LiveKit at %s: configure its webhook URL as %s",
                settings.livekit_url,
                control_url(settings) + WEBHOOK_PATH,
            )
        self.settings = settings
        if settings.workers:
            self.workers = await asyncio.to_thread(
                WorkerProcesses(settings.workers, settings.data_dir / "workers", livekit_state=livekit_state).start
            )
        else:
            log.info("WORKERS=0: no media worker started here; run `python worker.py` next to the LiveKit server")
        self.auth = Auth(settings)
        if warning := self.auth.startup_warning():
            log.warning(warning)
        self.services = build_services(settings, **self._providers)
        self.store = Store(settings.database_path, connection=self._store_connection)
        self.rooms = Rooms(settings)
        self.gateway = make_gateway(settings, self.services, wrap_backend=self._wrap_backend)
        log.info("functions backend: %s", self.gateway.backend_label)
        self.phone = (
            TwilioPhoneLeg(self.services, dial=self.gateway.dial_phone, connection=self._store_connection)
            if settings.twilio_configured
            else None
        )
        self.orchestrator = TransferOrchestrator(
            self.services,
            self.store,
            self.rooms,
            phone=self.phone,
            gateway=self.gateway,
            bus=self.bus,
            followers=self.followers,
        )
        await self.orchestrator.start()
        self._watch.spawn(self._watchdog())
        return self

    async def _watchdog(self) -> None:
        """The embedded server and the workers are ours to keep running: a death is noticed within
        WATCH_EVERY_S, logged, and the process started again."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.livekit is not None and not self.livekit.alive():
                await self._livekit_died()
            if self.workers is not None:
                await asyncio.to_thread(self.workers.restart_dead)

    async def _livekit_died(self) -> None:
        """The server's rooms died with it: the open calls are ended with a reason agents and callers
        are told (the store says so, nothing stays half-open), then the server is started again on the
        same port and keys, and the lobby is created anew. A failed start is tried again next tick."""
        assert self.livekit is not None
        log.error(
            "the embedded livekit-server (pid %s) died (%s): ending the open calls and starting it again",
            self.livekit.pid,
            self.livekit.exit_status(),
        )
        if (
            self.orchestrator is not None
        ):  # in the background: a database that cannot be written must not delay the restart
            self._watch.spawn(self._end_lost_calls(self.orchestrator))
        try:
            await asyncio.to_thread(self.livekit.start)
        except ServiceError as e:
            log.error("livekit-server did not start again (next try in %.1f s): %s", WATCH_EVERY_S, e)
            return
        self.livekit_restarts += 1
        log.warning("livekit-server started again (pid %s) on %s", self.livekit.pid, self.livekit.url)
        if self.orchestrator is not None:
            try:
                await self.orchestrator.ensure_lobby()
            except ServiceError as e:
                log.warning("the agents' lobby could not be created again yet: %s", e)

    @staticmethod
    async def _end_lost_calls(orchestrator: TransferOrchestrator) -> None:
        ended = await orchestrator.end_open_calls(LIVEKIT_DIED)
        if ended:
            log.error("%d open call(s) ended: %s", len(ended), LIVEKIT_DIED)

    async def stop(self) -> None:
        try:
            await self._stop()
        finally:
            self.instance_lock.release()

    async def _stop(self) -> None:
        self._watch.cancel()
        if self.orchestrator and self.livekit is not None:
            # The embedded server stops with the app, and its calls with it: they end now, with a
            # reason, while the server can still tell the agents and callers (bounded).
            try:
                await asyncio.wait_for(self.orchestrator.end_open_calls(APP_STOPPED), STOP_CALLS_S)
            except (TimeoutError, ServiceError) as e:
                log.warning("not every open call could be ended before stopping: %s", e or "timed out")
        if self.orchestrator:
            await self.orchestrator.aclose()
        if self.rooms:
            await self.rooms.aclose()
        if self.phone:
            self.phone.close()
        if self.store:
            self.store.close()
        # Side by side: the workers' jobs left with their rooms, so neither waits on the other, and a
        # stop is bounded by the slower of the two (a worker's SHUTDOWN_S), not by their sum.
        await asyncio.gather(
            *([asyncio.to_thread(self.workers.stop)] if self.workers else []),
            *([asyncio.to_thread(self.livekit.stop)] if self.livekit else []),
        )
        self.orchestrator = None
