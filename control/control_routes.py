"""The control plane's two inbound routes from LiveKit's side:

- `POST /livekit/webhook`: the LiveKit server's signed webhooks (who joined or left which room,
  which tracks were published, rooms that finished). Verified by `livekit.api.WebhookReceiver`
  (a JWT signed with the API key, carrying the body's SHA-256); anything else is 401 and
  changes nothing.
- `POST /internal/media`: reports from media-plane jobs (transcript segments, hold audio
  started, brief spoken), with a bearer token derived from the API secret.

Both hand the typed event to every `LiveKitEventSink` the app has (one orchestrator in the app;
tests register one per test), which ignores rooms and calls it does not own.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from livekit import api
from pydantic import ValidationError

from control.body_limit import read_body
from functions.errors import PayloadTooLarge
from functions.media_protocol import INTERNAL_PATH, WEBHOOK_PATH, MediaReport, ReportEnvelope, internal_token
from functions.settings import Settings

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # a webhook or a report is a few KiB; a transcript segment at most ~25 KiB


class LiveKitEventSink(Protocol):
    async def on_livekit_event(self, event: api.WebhookEvent) -> None: ...

    async def on_media_report(self, report: MediaReport) -> None: ...


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def control_router(settings: Callable[[], Settings], sinks: Callable[[], list[LiveKitEventSink]]) -> APIRouter:
    """`settings` and `sinks` are read per request: the embedded server's keys exist only after startup."""
    router = APIRouter(include_in_schema=False)

    @router.post(WEBHOOK_PATH)
    async def livekit_webhook(request: Request) -> Response:
        s = settings()
        if not s.livekit_api_key:
            return _error(503, "not_ready", "the control plane is starting")
        try:
            body = await read_body(request, MAX_BODY)  # counted while streaming
        except PayloadTooLarge as e:
            return _error(413, "PayloadTooLarge", e.message)
        receiver = api.WebhookReceiver(api.TokenVerifier(s.livekit_api_key, s.livekit_api_secret.get_secret_value()))
        try:
            event = receiver.receive(body.decode("utf-8", "replace"), request.headers.get("authorization", ""))
        except Exception as e:  # jwt's and the receiver's own errors: all mean "not from our server"
            log.warning("refused a LiveKit webhook: %s", e)
            return _error(401, "unauthorized", "webhook signature invalid")
        for sink in sinks():
            try:
                await sink.on_livekit_event(event)
            except Exception:
                log.exception("webhook %s for %s failed", event.event, event.room.name)
        return Response(status_code=204)

    @router.post(INTERNAL_PATH)
    async def media_report(request: Request) -> Response:
        s = settings()
        secret = s.livekit_api_secret.get_secret_value()
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secret or not hmac.compare_digest(given.encode(), internal_token(secret).encode()):
            return _error(401, "unauthorized", "bad or missing worker token")
        try:
            report = ReportEnvelope.model_validate_json(await read_body(request, MAX_BODY)).report
        except PayloadTooLarge as e:
            return _error(413, "PayloadTooLarge", e.message)
        except ValidationError as e:
            return _error(422, "invalid", str(e)[:500])
        for sink in sinks():
            await sink.on_media_report(report)
        return Response(status_code=204)

    return router
