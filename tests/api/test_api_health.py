"""`GET /api` says whether LiveKit answers: `livekit: ok` and `status: ok` against the real
server; `status: degraded` with `livekit: unreachable: <reason>` when it does not, within
about a second.

Peers: the real app (ASGI, in process) on the session's real livekit-server; "down" is the
app's RoomService client pointed at a closed loopback port, or given the wrong API secret."""

from __future__ import annotations

import socket
import time

import pytest
from pydantic import SecretStr

from control.rooms import Rooms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


async def info(client) -> tuple[dict, float]:
    t0 = time.monotonic()
    r = await client.get("/api")
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - t0


async def test_livekit_up_is_ok(client):
    body, _ = await info(client)
    assert body["status"] == "ok" and body["livekit"] == "ok"


@pytest.mark.parametrize(
    ("update", "words"),
    [
        ({"livekit_url": f"ws://127.0.0.1:{closed_port()}"}, "unreachable"),
        ({"livekit_api_secret": SecretStr("not-the-secret-" + "x" * 32)}, "unauthenticated"),
    ],
)
async def test_livekit_down_is_degraded(client, ctx, update, words):
    working = ctx.rooms
    broken = Rooms(ctx.settings.model_copy(update=update))
    ctx.rooms = broken  # what the health check reads at request time
    try:
        body, took = await info(client)
    finally:
        ctx.rooms = working
        await broken.aclose()
    assert body["status"] == "degraded", body
    assert body["livekit"].startswith("unreachable: ") and words in body["livekit"].lower(), body
    assert took < 3.0  # bounded by the check's 1 s timeout (plus a slow machine's slack)
    body, _ = await info(client)  # the working client again: ok at once, not a cached failure
    assert body["status"] == "ok"
