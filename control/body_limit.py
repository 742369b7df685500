"""Request bodies bounded while they stream in, for the app's machine-facing routes.

`BodyLimit` is a pure ASGI middleware with one limit per path prefix (`/api`, `/twilio`,
`/livekit/webhook`, `/internal/media`): a request that declares a larger Content-Length is
refused before a byte of its body is read, and one that does not (chunked) is counted chunk
by chunk and refused as soon as it passes the limit. Nothing is buffered here, so four 200 MB posts cost
the app what four 32 KiB ones do. The refusal is the API's JSON error shape:
413 `{"detail": "...", "error": "PayloadTooLarge"}` (400 `BadRequest` for a malformed
Content-Length).

Install it once on the app (`install_body_limits(app)`); routes may keep stricter limits of
their own (the API's 16 KiB per JSON body, with 512 KiB for transcripts) and read their body
with `read_body`, which applies the same rule to one request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from functions.errors import InvalidInput, PayloadTooLarge

log = logging.getLogger(__name__)

KiB = 1024
# The largest body each prefix may take. /api: its largest route limit (transcripts); each
# route's own limit is stricter. /twilio: Twilio's form posts are a few KiB. /livekit/webhook:
# LiveKit's JSON events (room, participant, track info) are a few KiB; /internal/media: the media
# workers' reports, a transcript segment at most ~25 KiB.
DEFAULT_LIMITS: dict[str, int] = {
    "/api": 512 * KiB,
    "/twilio": 32 * KiB,
    "/livekit/webhook": 64 * KiB,
    "/internal/media": 64 * KiB,
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: per-path-prefix request body limits, checked while streaming."""

    def __init__(self, app: ASGIApp, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        items = (limits if limits is not None else DEFAULT_LIMITS).items()
        # Longest prefix first, so `/api/x` may have a limit of its own inside `/api`.
        self.limits = sorted(((p.rstrip("/") or "/", int(n)) for p, n in items), key=lambda x: -len(x[0]))

    def limit_for(self, path: str) -> int | None:
        """The limit for `path` (a prefix matches whole segments: `/api` covers `/api` and `/api/…`, not `/apix`)."""
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix + "/") or prefix == "/":
                return limit
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (limit := self.limit_for(scope.get("path", ""))) is None:
            await self.app(scope, receive, send)
            return
        try:
            declared = content_length(_header(scope, b"content-length"))
        except InvalidInput as e:
            await _refuse(send, 400, e.message, "BadRequest")
            return
        if declared is not None and declared > limit:
            # Refused before reading: the app never sees the request.
            await _refuse(send, 413, _too_large(limit, declared), "PayloadTooLarge")
            return

        received = 0
        refused = False  # we answered 413 ourselves: the app's own answer is dropped
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The over-limit chunk is never passed on; the app is told the client went
                    # away, which every ASGI framework handles by stopping to read.
                    if not started:
                        refused = True
                        await _refuse(send, 413, _too_large(limit), "PayloadTooLarge")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception as e:
            if not refused:
                raise
            # The app failed on the disconnect we gave it (e.g. Starlette's ClientDisconnect);
            # the client has its 413 already.
            log.debug(
                "%s %s: body over %d bytes refused; the app stopped with %r",
                scope.get("method"),
                scope.get("path"),
                limit,
                e,
            )


def install_body_limits(app: Any, limits: Mapping[str, int] | None = None) -> None:
    """Add `BodyLimit` to a Starlette/FastAPI app once (a second call changes nothing)."""
    if not any(getattr(m, "cls", None) is BodyLimit for m in app.user_middleware):
        app.add_middleware(BodyLimit, limits=dict(limits if limits is not None else DEFAULT_LIMITS))


def content_length(raw: str | None) -> int | None:
    """The declared body size, None if not declared; InvalidInput if it is not a number."""
    if raw is None:
        return None
    value = raw.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 19:
        raise InvalidInput("Content-Length is not a number")
    return int(value)


async def read_body(request: Any, limit: int) -> bytes:
    """A Starlette request's body, refused (PayloadTooLarge) past `limit` bytes: the declared
    Content-Length first, then the bytes as they arrive. Never holds more than `limit` + one chunk."""
    declared = content_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise PayloadTooLarge(_too_large(limit, declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(_too_large(limit))
    return bytes(body)


def _too_large(limit: int, declared: int | None = None) -> str:
    if declared is not None:
        return f"request body is {declared} bytes; this endpoint takes at most {limit}"
    return f"request body is larger than {limit} bytes; this endpoint takes at most {limit}"


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", ()) if k.lower() == name]
    if not values:
        return None
    if len(set(values)) > 1:  # two different lengths: which one would the server frame by?
        return "conflicting"
    return values[0].decode("latin-1")


async def _refuse(send: Send, status: int, detail: str, error: str) -> None:
    body = json.dumps({"detail": detail, "error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
