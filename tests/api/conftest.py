"""API fixtures: the real app (`create_app`, lifespan run) against the session's real
livekit-server, with API_KEY and AGENT_PASSCODE set so authentication is enforced, and an
httpx client speaking ASGI to it in the test's own event loop (so realtime-SDK peers and
the app's server-side participants share one loop, as in production)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from app import create_app
from functions.settings import Settings
from functions.tts.speech import EspeakSpeaker
from tests.integration.conftest import end_everything
from tests.support.peer import Peer

API_KEY = "test-api-key-0123456789"
PASSCODE = "test-passcode"


def agent_headers(identity: str, *, key: str | None = API_KEY) -> dict[str, str]:
    headers = {"X-Agent-Identity": identity}
    if key is not None:
        headers["X-API-Key"] = key
    return headers


def with_auth(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update={"api_key": SecretStr(API_KEY), "agent_passcode": SecretStr(PASSCODE), **update})


@pytest.fixture
def api_settings(control_settings) -> Settings:
    """Auth enforced. Live transcription (a hidden transcriber in every call room: its own
    feature with its own tests) is off here and on in the end-to-end flow tests: these tests
    are about requests and state, and a transcriber still connecting when a short test's app
    shuts down stays connected (see docs/api.md, Testing)."""
    return with_auth(control_settings, live_transcription=False)


@pytest.fixture
def store_connection() -> type[sqlite3.Connection]:
    """The class of the app's SQLite connections (test_api_storage_errors.py gives one it controls)."""
    return sqlite3.Connection


@pytest.fixture
async def api_app(api_settings, control_hub, store_connection):
    # espeak-ng: real speech, fast on 2 cores (the AI tests cover piper and OpenAI).
    app = create_app(api_settings, speaker=EspeakSpeaker(api_settings), store_connection=store_connection)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        ctx = app.state.ctx
        unregister = control_hub.add(ctx.sinks)  # the session's webhooks and job reports reach this app
        try:
            yield app
        finally:
            if ctx.orchestrator:
                await end_everything(ctx.orchestrator)
            unregister()


@pytest.fixture
async def client(api_app):
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=60) as c:
        yield c


@pytest.fixture
def ctx(api_app):
    return api_app.state.ctx


async def make_online(client: httpx.AsyncClient, ctx, identity: str, *, key: str = API_KEY) -> Peer:
    """The agent as an API client makes it available, over HTTP only: connected to the lobby (a token
    from POST /api/tokens) and taking calls (POST /api/agents/availability). A transfer's target must
    be. Returns its lobby peer (the caller disconnects it)."""
    headers = agent_headers(identity, key=key)
    r = await client.post("/api/tokens", json={"role": "agent", "room": "agents-lobby"}, headers=headers)
    assert r.status_code == 200, r.text
    peer = await Peer(identity).connect(r.json()["url"], r.json()["token"])
    r = await client.post("/api/agents/availability", json={"available": True}, headers=headers)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while not ctx.orchestrator.presence.is_online(identity):  # its webhook, or the next RoomService sync
        assert time.monotonic() < deadline, f"{identity} never showed up online"
        await asyncio.sleep(0.05)
    return peer


@pytest.fixture
async def online(client, ctx):
    """online(identity): `make_online` for this test's app; the lobby peers leave after the test."""
    peers: list[Peer] = []

    async def make(identity: str) -> Peer:
        peers.append(peer := await make_online(client, ctx, identity))
        return peer

    yield make
    for peer in peers:
        await peer.disconnect()


async def wait_transfer_state(client: httpx.AsyncClient, transfer_id: str, agent: str, state: str, timeout=15.0):
    """Poll GET /api/transfer/{id} until it reports `state`; returns the body."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = await client.get(f"/api/transfer/{transfer_id}", headers=agent_headers(agent))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["state"] == state:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"transfer {transfer_id} stayed {body.get('state')}, not {state}")


# --- phone transfers: the real twilio SDK against the local REST recorder ----------------------

TWILIO_SID = "AC" + "2" * 32
TWILIO_TOKEN = "api-phone-test-auth-token"
TWILIO_FROM = "+14155550100"
PHONE_TARGET = "+14155550123"
PUBLIC = "https://wt.example.test"


def with_twilio(settings: Settings, api_base_url: str) -> Settings:
    """Twilio configured, its REST host at `api_base_url` (a TwilioRecorder on loopback)."""
    return settings.model_copy(
        update={
            "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "twilio_from_number": TWILIO_FROM,
            "twilio_api_base_url": api_base_url,
            "public_base_url": PUBLIC,
        }
    )


@pytest.fixture
def recorder():
    """Twilio's REST API as a local recorder on loopback (the real SDK talks to it)."""
    from tests.support.twilio_recorder import TwilioRecorder

    with TwilioRecorder() as rec:
        yield rec


@pytest.fixture
async def phone_app(api_settings, recorder, store_connection):
    """The real app with Twilio configured (REST → `recorder`), so /api/twilio/* and /twilio work."""
    s = with_twilio(api_settings, recorder.url)
    app = create_app(s, speaker=EspeakSpeaker(s), store_connection=store_connection)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        yield app


@pytest.fixture
async def phone_client(phone_app):
    transport = httpx.ASGITransport(app=phone_app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC, timeout=60) as c:
        yield c
