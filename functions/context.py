"""The control plane's parts, built once at startup and shared by the UI, the HTTP API and the
webhooks: settings, the embedded LiveKit server (when no LIVEKIT_URL is configured) and the media
workers it starts, services, the functions gateway (local or Modal), store, rooms, and the
orchestrator with its phone leg (Twilio).

Nothing here joins a room or touches audio: that is the media plane (worker.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from functions.auth import Auth
from functions.background import Background
from functions.gateway import Backend, FunctionsGateway, make_gateway
from functions.livekit_server import EmbeddedLiveKit
from functions.media_protocol import WEBHOOK_PATH
from functions.phone_bridge import TwilioPhoneLeg
from functions.rooms import Rooms
from functions.services import Services, build_services
from functions.settings import Settings
from functions.store import Store
from functions.transfer import TransferOrchestrator
from functions.workers import WorkerProcesses

log = logging.getLogger(__name__)
WATCH_EVERY_S = 1.0  # how often the embedded server and the workers are checked


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
        self, settings: Settings, *, wrap_backend: Callable[[Backend], Backend] | None = None, **providers: object
    ) -> None:
        """`providers` replace the services' providers; `wrap_backend` wraps the gateway's backends (tests)."""
        self.base_settings = settings
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
        self._watch = Background()
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the control plane runs on

    @property
    def started(self) -> bool:
        return self.orchestrator is not None

    def sinks(self) -> list[TransferOrchestrator]:
        """Who hears LiveKit webhooks and media reports (see functions.control_routes)."""
        return [self.orchestrator] if self.orchestrator else []

    async def start(self) -> AppContext:
        self.loop = asyncio.get_running_loop()
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
        self.store = Store(settings.database_path)
        self.rooms = Rooms(settings)
        self.gateway = make_gateway(settings, self.services, wrap_backend=self._wrap_backend)
        log.info("functions backend: %s", self.gateway.backend_label)
        self.phone = TwilioPhoneLeg(self.services, dial=self.gateway.dial_phone) if settings.twilio_configured else None
        self.orchestrator = TransferOrchestrator(
            self.services, self.store, self.rooms, phone=self.phone, gateway=self.gateway
        )
        await self.orchestrator.start()
        self._watch.spawn(self._watchdog())
        return self

    async def _watchdog(self) -> None:
        """The embedded server and the workers are ours to keep running: a death is noticed within a
        second, logged, and the process started again."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.livekit is not None and not self.livekit.alive():
                log.error("the embedded livekit-server died; starting it again (open calls are lost)")
                await asyncio.to_thread(self.livekit.start)
            if self.workers is not None:
                await asyncio.to_thread(self.workers.restart_dead)

    async def stop(self) -> None:
        self._watch.cancel()
        if self.orchestrator:
            await self.orchestrator.aclose()
        if self.rooms:
            await self.rooms.aclose()
        if self.phone:
            self.phone.close()
        if self.store:
            self.store.close()
        if self.workers:
            await asyncio.to_thread(self.workers.stop)
        if self.livekit:
            await asyncio.to_thread(self.livekit.stop)
        self.orchestrator = None
