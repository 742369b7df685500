"""The running application's parts, built once at startup and shared by the UI,
the HTTP API and the webhooks: settings, the embedded LiveKit server (when no
LIVEKIT_URL is configured), services, the functions gateway (local or Modal), store,
rooms, the orchestrator with its phone leg (Twilio) and live transcription."""

from __future__ import annotations

import logging

from functions.auth import Auth
from functions.gateway import FunctionsGateway, make_gateway
from functions.live_transcriber import LiveTranscription, attach_live_transcription
from functions.livekit_server import EmbeddedLiveKit
from functions.phone_bridge import TwilioPhoneLeg
from functions.rooms import Rooms
from functions.services import Services, build_services
from functions.settings import Settings
from functions.store import Store
from functions.transfer import TransferOrchestrator

log = logging.getLogger(__name__)


class AppContext:
    """Filled by `start()` inside the server's event loop (LiveKit clients need one)."""

    def __init__(self, settings: Settings, **providers: object) -> None:
        self.base_settings = settings
        self._providers = providers
        self.settings: Settings = settings
        self.livekit: EmbeddedLiveKit | None = None
        self.services: Services | None = None
        self.store: Store | None = None
        self.rooms: Rooms | None = None
        self.orchestrator: TransferOrchestrator | None = None
        self.auth: Auth | None = None
        self.live: LiveTranscription | None = None
        self.phone: TwilioPhoneLeg | None = None
        self.gateway: FunctionsGateway | None = None

    @property
    def started(self) -> bool:
        return self.orchestrator is not None

    async def start(self) -> AppContext:
        settings = self.base_settings
        if not settings.livekit_url:
            self.livekit = EmbeddedLiveKit(settings).start()
            settings = self.livekit.settings_for(settings)
            log.info("embedded LiveKit server at %s", settings.livekit_url)
        self.settings = settings
        self.auth = Auth(settings)
        if self.auth.open_mode:
            log.warning("AGENT_PASSCODE and API_KEY are unset: agents are not authenticated (local use only)")
        self.services = build_services(settings, **self._providers)
        self.store = Store(settings.database_path)
        self.rooms = Rooms(settings)
        self.gateway = make_gateway(settings, self.services)
        log.info("functions backend: %s", self.gateway.backend_label)
        self.phone = TwilioPhoneLeg(self.services) if settings.twilio_configured else None
        self.orchestrator = TransferOrchestrator(self.services, self.store, self.rooms, phone=self.phone)
        if settings.live_transcription:
            self.live = LiveTranscription(settings, self.store, self.rooms, self.services.transcriber)
            attach_live_transcription(self.orchestrator, self.live)
        await self.orchestrator.start()
        return self

    async def stop(self) -> None:
        if self.live:
            await self.live.aclose()
        if self.orchestrator:
            await self.orchestrator.aclose()
        if self.rooms:
            await self.rooms.aclose()
        if self.phone:
            self.phone.close()
        if self.store:
            self.store.close()
        if self.livekit:
            self.livekit.stop()
        self.orchestrator = None
