"""Oversized bodies are refused while they stream in, never read whole: four unsigned 200 MB
posts to /twilio (and to /api) are answered 413 and the app's memory stays flat.

Peers: the real app (`create_app` with Twilio configured, its body limits installed as
app.py does) served by a real uvicorn on a free loopback port, the session's real
livekit-server behind it, and a real HTTP client in this process. Bodies are generated
lazily, one 64 KiB chunk object yielded again and again, so the client holds nothing either.
Memory is this process's peak RSS (app and client), sampled every 5 ms during the posts."""

from __future__ import annotations

import gc
import threading
import time

import httpx
import psutil
import pytest

from app import create_app
from control.body_limit import install_body_limits
from functions.settings import load_settings
from functions.tts.speech import EspeakSpeaker
from tests.api.conftest import agent_headers, with_auth, with_twilio
from tests.support.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MiB = 1024 * 1024
BIG = 200 * MiB
CHUNK = b"x" * (64 * 1024)
MAX_GROWTH = 20 * MiB
PATHS = ["/twilio/status?tid=abc123", "/api/transfer/cancel", "/livekit/webhook", "/internal/media"]


def lazy_body(total: int = BIG):
    sent = 0
    while sent < total:
        yield CHUNK
        sent += len(CHUNK)


async def lazy_body_async(total: int = BIG):
    for chunk in lazy_body(total):
        yield chunk


class PeakRss:
    """This process's peak RSS while the block runs (a sampler thread; psutil)."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def phone_settings(livekit_server, data_dir):
    base = livekit_server.settings_for(
        load_settings(data_dir=data_dir, openai_api_key="", openai_base_url="", twilio_account_sid="")
    )
    # Twilio's REST host is never called here (nothing is dialed): a closed loopback port.
    return with_twilio(with_auth(base, live_transcription=False), "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def served(livekit_server, tmp_path_factory):
    s = phone_settings(livekit_server, tmp_path_factory.mktemp("limits"))
    app = create_app(s, speaker=EspeakSpeaker(s))
    install_body_limits(app)  # what app.py does; a no-op once create_app installs it itself
    with Served(app) as srv:
        yield srv


def post_four(client: httpx.Client, path: str) -> list[tuple[int, str, float]]:
    """Four 200 MB posts, unsigned and without credentials: two chunked, two with Content-Length."""
    out = []
    for declared in (False, True, False, True):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if declared:
            headers["Content-Length"] = str(BIG)
        t0 = time.monotonic()
        r = client.post(path, content=lazy_body(), headers=headers)
        out.append((r.status_code, r.json().get("error", ""), time.monotonic() - t0))
    return out


@pytest.mark.parametrize("path", PATHS)
def test_200mb_posts_are_refused_while_streaming(served, path):
    with httpx.Client(base_url=served.url, timeout=60) as client:
        client.post(path, content=b"x" * 100_000)  # warm-up: first-use allocations are not the body's
        with PeakRss() as rss:
            results = post_four(client, path)
        # Still serving, on the same connection: a small request is answered as usual.
        r = client.post("/api/transfer/cancel", json={"transfer_id": "ffffffffffff"}, headers=agent_headers("agent-a"))
        assert r.status_code == 404, r.text
    print(
        f"\n[body limits] {path}: 4 x 200 MB refused "
        f"({', '.join(f'{s} in {t:.2f} s' for s, _, t in results)}); peak RSS growth {rss.growth / MiB:.1f} MiB"
    )
    # The workers' report route checks its bearer token first: refused (401) before a byte is read.
    allowed = {(413, "PayloadTooLarge")} | ({(401, "unauthorized")} if path == "/internal/media" else set())
    assert {(s, e) for s, e, _ in results} <= allowed, results
    assert rss.growth < MAX_GROWTH


async def test_the_routers_alone_also_stream_their_limit(livekit_server, tmp_path):
    """Before app.py installs the middleware, /twilio and /api still never read a body whole
    (in-process ASGI, no middleware: the routes' own counted reads)."""
    from asgi_lifespan import LifespanManager

    s = phone_settings(livekit_server, tmp_path)
    app = create_app(s, speaker=EspeakSpeaker(s))
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ != "BodyLimit"]
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=60) as client:
            await client.post(PATHS[0], content=b"x" * 100_000)
            with PeakRss() as rss:
                codes = [(await client.post(p, content=lazy_body_async())).status_code for p in PATHS[:2] * 2]
    print(f"\n[body limits] routers alone: 4 x 200 MB refused {codes}; peak RSS growth {rss.growth / MiB:.1f} MiB")
    assert codes == [413] * 4
    assert rss.growth < MAX_GROWTH
