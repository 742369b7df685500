"""`BodyLimit`, the ASGI middleware bounding request bodies per path prefix, driven with raw
ASGI messages in process (no server, no peers): what the app behind it sees, what the
client gets back, and that nothing past the limit is ever read from the client."""

from __future__ import annotations

import asyncio
import json

import pytest

from control.body_limit import DEFAULT_LIMITS, BodyLimit, install_body_limits

pytestmark = pytest.mark.unit
BOUND_S = 5


class EchoApp:
    """Reads the whole body (as a careless handler would) and answers its length."""

    def __init__(self) -> None:
        self.bodies: list[int] = []
        self.saw_disconnect = False

    async def __call__(self, scope, receive, send) -> None:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                raise OSError("client went away")  # what a framework's ClientDisconnect amounts to
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(size)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


class Client:
    """Feeds chunks on demand and counts how many the server pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.total, self.size, self.pulled = chunks, size, 0

    async def receive(self):
        self.pulled += 1
        more = self.pulled < self.total
        return {"type": "http.request", "body": b"x" * self.size, "more_body": more}


async def call(mw, path: str, client: Client, headers: list[tuple[bytes, bytes]] | None = None):
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers or []}
    await asyncio.wait_for(mw(scope, client.receive, send), BOUND_S)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, sent


async def test_chunked_body_over_the_limit_is_refused_while_streaming() -> None:
    app = EchoApp()
    client = Client(chunks=3200)  # 200 MB if it were all read
    status, body, sent = await call(BodyLimit(app), "/twilio/status", client)
    assert status == 413
    err = json.loads(body)
    assert err["error"] == "PayloadTooLarge" and str(DEFAULT_LIMITS["/twilio"]) in err["detail"]
    assert client.pulled == 1  # 64 KiB > 32 KiB: the first chunk was the last one read
    assert app.bodies == [] and app.saw_disconnect
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # one answer only


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    app = EchoApp()
    client = Client(chunks=3200)
    status, body, _ = await call(BodyLimit(app), "/api/transfer/cancel", client, [(b"content-length", b"209715200")])
    assert status == 413 and "209715200" in json.loads(body)["detail"]
    assert client.pulled == 0 and app.bodies == [] and not app.saw_disconnect


@pytest.mark.parametrize("value", [b"12x", b"-1", b"", b"1" * 30])
async def test_malformed_content_length_is_a_bad_request(value: bytes) -> None:
    status, body, _ = await call(BodyLimit(EchoApp()), "/api/x", Client(1, 10), [(b"content-length", value)])
    assert status == 400 and json.loads(body)["error"] == "BadRequest"


async def test_conflicting_content_lengths_are_a_bad_request() -> None:
    headers = [(b"content-length", b"10"), (b"content-length", b"20")]
    status, _, _ = await call(BodyLimit(EchoApp()), "/twilio/status", Client(1, 10), headers)
    assert status == 400


async def test_bodies_within_the_limit_pass_untouched() -> None:
    app = EchoApp()
    limit = DEFAULT_LIMITS["/twilio"]
    status, body, _ = await call(BodyLimit(app), "/twilio/status", Client(chunks=4, size=limit // 4))
    assert status == 200 and body == str(limit).encode() and app.bodies == [limit]


@pytest.mark.parametrize(
    ("path", "limited"),
    [
        ("/api", True),
        ("/api/summary/generate", True),
        ("/twilio/gather", True),
        ("/livekit/webhook", True),
        ("/internal/media", True),
        ("/apix", False),  # a prefix covers whole path segments only
        ("/", False),  # the UI is Gradio's, with limits of its own
        ("/gradio_api/upload", False),
    ],
)
async def test_limits_apply_per_path_prefix(path: str, limited: bool) -> None:
    app = EchoApp()
    status, _, _ = await call(BodyLimit(app), path, Client(chunks=20))  # 1.25 MiB
    assert (status == 413) is limited
    assert app.bodies == ([] if limited else [20 * 64 * 1024])


async def test_longest_prefix_wins() -> None:
    mw = BodyLimit(EchoApp(), {"/api": 1024, "/api/summary": 4096})
    assert mw.limit_for("/api/summary/generate") == 4096
    assert mw.limit_for("/api/tokens") == 1024
    assert mw.limit_for("/twilio/status") is None


async def test_websockets_and_lifespan_pass_through() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    mw = BodyLimit(app)
    for kind in ("websocket", "lifespan"):
        await mw({"type": kind, "path": "/api"}, None, None)
    assert seen == ["websocket", "lifespan"]


def test_install_is_idempotent() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    install_body_limits(app)
    install_body_limits(app)
    assert [m.cls for m in app.user_middleware].count(BodyLimit) == 1
