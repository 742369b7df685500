"""The control plane's two inbound routes from LiveKit's side:

- `POST /livekit/webhook`: the LiveKit server's signed webhooks (who joined or left which room,
  which tracks were published, rooms that finished). Verified by `livekit.api.WebhookReceiver`
  (a JWT signed with the API key, carrying the body's SHA-256); anything else is 401 and
  changes nothing.
- `POST /internal/media`: reports from media-plane jobs (transcript segments, hold audio
  started, brief spoken), with a bearer token derived from the API secret.
- `POST /internal/media/alive?worker_id=…`: a worker's liveness connection, same token. Its body
  is a byte every few seconds and never ends while the worker lives; when the connection breaks
  before the worker ended it (the kernel closes a dead process's sockets), the sinks get a
  `WorkerGone` at once, so a killed worker's hold audio comes back without waiting for beats.

Both hand the typed event to every `LiveKitEventSink` the app has (one orchestrator in the app;
tests register one per test), which ignores rooms and calls it does not own.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Callable
from typing import Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from livekit import api
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from control.body_limit import read_body
from functions.errors import PayloadTooLarge
from functions.media_protocol import (
    ALIVE_PATH,
    INTERNAL_PATH,
    WEBHOOK_PATH,
    WORKER_ID_RE,
    MediaReport,
    ReportEnvelope,
    WorkerGone,
    internal_token,
)
from functions.settings import Settings

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # a webhook or a report is a few KiB; a transcript segment at most ~25 KiB


class LiveKitEventSink(Protocol):
    async def on_livekit_event(self, event: api.WebhookEvent) -> None: ...

    async def on_media_report(self, report: MediaReport) -> None: ...


STOPPING_POLL_S = 0.5


async def _drain(request: Request) -> None:
    """Read a liveness body to its end (the worker ended it), or raise ClientDisconnect (it broke)."""
    async for _keepalive in request.stream():
        pass


def server_stopping(request: Request) -> bool:
    """Whether the server running this app is stopping: `app.state.stopping()`, set by whoever runs it
    (app.main, tests/support/served.py); false when nobody said."""
    stopping = getattr(request.app.state, "stopping", None)
    return bool(stopping and stopping())


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

    def worker_authorized(request: Request) -> bool:
        secret = settings().livekit_api_secret.get_secret_value()
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return bool(secret) and hmac.compare_digest(given.encode(), internal_token(secret).encode())

    @router.post(INTERNAL_PATH)
    async def media_report(request: Request) -> Response:
        if not worker_authorized(request):
            return _error(401, "unauthorized", "bad or missing worker token")
        try:
            report = ReportEnvelope.model_validate_json(await read_body(request, MAX_BODY)).report
        except PayloadTooLarge as e:
            return _error(413, "PayloadTooLarge", e.message)
        except ValidationError as e:
            return _error(422, "invalid", str(e)[:500])
        if isinstance(report, WorkerGone):  # made here from a broken liveness connection, never sent
            return _error(422, "invalid", "worker_gone is not a report a worker sends")
        for sink in sinks():
            await sink.on_media_report(report)
        return Response(status_code=204)

    @router.post(ALIVE_PATH)
    async def worker_alive(request: Request) -> Response:
        if not worker_authorized(request):
            return _error(401, "unauthorized", "bad or missing worker token")
        worker_id = request.query_params.get("worker_id", "")
        if not re.fullmatch(WORKER_ID_RE, worker_id):
            return _error(422, "invalid", "worker_id must look like worker-<12 hex digits>")
        drain = asyncio.ensure_future(_drain(request))
        try:
            while not drain.done():
                await asyncio.wait({drain}, timeout=STOPPING_POLL_S)
                if server_stopping(request):  # let go: an open body would hold up the server's own stop
                    return Response(status_code=204)
            drain.result()
        except ClientDisconnect:
            gone = WorkerGone(worker_id=worker_id)
            for sink in sinks():
                try:
                    await sink.on_media_report(gone)
                except Exception:
                    log.exception("%s gone: a sink failed", worker_id)
        finally:
            drain.cancel()
        return Response(status_code=204)  # the worker ended it (a rotation, a clean stop), or it is gone

    return router
