"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema (schemathesis),
against the real app served by uvicorn on a free port with the session's real livekit-server:
zero 5xx responses, every status code, content type, header and body as the schema says.

A second property test drives the transfer endpoints with real ids and random actors: a
refused request changes nothing, an accepted one changes exactly what the state machine says.

Bounded for CI: a few dozen examples per operation, no shrinking, no example database.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from types import SimpleNamespace

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from functions.settings import load_settings
from tests.api.conftest import API_KEY, agent_headers, with_auth
from tests.support.peer import Peer
from tests.support.served import Served

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))
STATS: Counter = Counter()
A, B = "agent-a", "agent-b"


class ToneSpeaker:
    """A speaker whose cost does not grow with odd text: the fuzzer sends up to 4000 characters of
    any script, which espeak-ng can take minutes over on 2 cores. Real speech is tested in
    test_api_flow.py; here the HTTP contract is (streaming, content types, refusals)."""

    name = "tone"

    def synthesize(self, text: str, voice: str | None = None):
        from functions.audio import tone
        from functions.tts.protocol import PcmChunk

        words = text.split()
        for _ in range(0, min(len(words), 40), 8):  # one 50 ms chunk per 8 words
            yield PcmChunk(tone(440, 0.05, 16000), 16000)


@pytest.fixture(scope="module")
def served(livekit_server, tmp_path_factory, control_hub, media_worker):
    base = livekit_server.settings_for(
        load_settings(
            data_dir=tmp_path_factory.mktemp("fuzz"),
            openai_api_key="",
            openai_base_url="",
            twilio_account_sid="",
            ring_timeout_s=120,
            accept_timeout_s=300,
            join_timeout_s=3,
            workers=0,
            control_url=control_hub.url,
        )
    )
    s = with_auth(base, live_transcription=False)
    app = create_app(s, speaker=ToneSpeaker())
    with Served(app) as srv:
        ctx = app.state.ctx
        unregister = control_hub.add(ctx.sinks, loop=ctx.loop)
        yield srv
        unregister()
    print(f"\n[api fuzz] responses by status: {dict(sorted(STATS.items()))}")


def api_openapi() -> dict:
    """The API's OpenAPI schema, built from the router alone (no server, no UI needed to collect)."""
    from fastapi import FastAPI

    from control.api import api_router

    app = FastAPI(title="Warm Transfer", version="1")
    app.include_router(api_router(SimpleNamespace(started=False)))
    return app.openapi()


schema = schemathesis.openapi.from_dict(api_openapi())
# Schema-violating requests must be refused with a 4xx; 413 (body over the limit) is one too.
schema.config.checks.negative_data_rejection.expected_statuses = ["400", "401", "403", "404", "409", "413", "422"]


def test_the_served_schema_is_the_fuzzed_one(served):
    raw = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    api_paths = {p: ops for p, ops in raw["paths"].items() if p.startswith("/api")}
    assert api_paths == api_openapi()["paths"]
    assert len(api_paths) >= 14


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_endpoint_from_the_schema(case, served):
    # A valid key on every request, so generation reaches past authentication (the auth tests
    # cover missing and wrong credentials); X-Agent-Identity is whatever was generated.
    case.headers = {**(case.headers or {}), "X-API-Key": API_KEY}
    response = case.call(base_url=served.url, timeout=120)
    STATS[response.status_code] += 1
    checks = CHECKS
    if case.path.startswith("/api/twilio/") and response.status_code == 501:
        # The documented answer until Twilio is configured (the brief asks for exactly this).
        assert response.json()["error"] == "NotAvailable"
        checks = [c for c in CHECKS if c is not not_a_server_error]
    else:
        assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    case.validate_response(response, checks=checks)


# --- real ids, random actors: refusals change nothing ------------------------------------------------

ACTIONS = ["complete", "cancel", "decline", "initiate", "get", "token_call", "token_consult", "end"]
ACTORS = [A, B, "agent-z", "caller-x", "hold-x"]


def _snapshot(ctx, call_id: str) -> str:
    """The world's call and its transfers with their logs (earlier worlds' completing transfers
    still finish in the background, legitimately)."""
    call = ctx.store.get_call(call_id).model_dump(mode="json")
    transfers = [t.model_dump(mode="json") for t in ctx.store.list_transfers(call_id=call_id)]
    return json.dumps({"call": call, "transfers": transfers}, sort_keys=True)


class World:
    """One call of agent-a with a consulting transfer to agent-b, rebuilt after a change."""

    def __init__(self, client: httpx.Client, ctx) -> None:
        self.client = client
        self.ctx = ctx
        self.t: dict | None = None

    def fresh(self) -> dict:
        c = self.client
        # Callers the schema fuzzing started wait in the queue and ring B (available) in turn: they hang
        # up first (a waiting caller is offered to B like any other call; B ringing takes no transfer).
        orch = self.ctx.orchestrator
        for waiting in orch.calls.waiting():
            ended = orch.end_call(waiting.call_id, actor="fuzz")
            asyncio.run_coroutine_threadsafe(ended, self.ctx.loop).result(30)
        # B takes the next transfer once free again (an earlier world's accepted transfer may still be
        # completing: B never joins here, so it fails after JOIN_TIMEOUT_S).
        deadline = time.monotonic() + 30
        while not any(
            a["identity"] == B and a["available"]
            for a in c.get("/api/agents", headers=agent_headers(A)).json()["agents"]
        ):
            assert time.monotonic() < deadline, "agent-b never became available again"
            time.sleep(0.1)
        r = c.post("/api/rooms/create", json={"caller_name": "Fuzz", "agent_identity": A}, headers=agent_headers(A))
        assert r.status_code == 201, r.text
        self.call = r.json()["call"]
        r = c.post(
            "/api/transfer/initiate", json={"call_id": self.call["call_id"], "target": B}, headers=agent_headers(A)
        )
        assert r.status_code == 201, r.text
        self.t = r.json()
        return self.t


@pytest.fixture(scope="module")
def world(served):
    """B is online (its lobby peer runs on the app's loop) and taking calls, as a transfer's target must be."""
    loop = served.app.state.ctx.loop
    with httpx.Client(base_url=served.url, timeout=120) as client:
        r = client.post("/api/tokens", json={"role": "agent", "room": "agents-lobby"}, headers=agent_headers(B))
        assert r.status_code == 200, r.text
        b_lobby = Peer(B)
        asyncio.run_coroutine_threadsafe(b_lobby.connect(r.json()["url"], r.json()["token"]), loop).result(30)
        r = client.post("/api/agents/availability", json={"available": True}, headers=agent_headers(B))
        assert r.status_code == 200, r.text
        try:
            yield World(client, served.app.state.ctx)
        finally:
            asyncio.run_coroutine_threadsafe(b_lobby.disconnect(), loop).result(15)


def _request(world: World, action: str, actor: str, reason: str) -> httpx.Response:
    c, t, call = world.client, world.t, world.call
    h = agent_headers(actor)
    tid = {"transfer_id": t["transfer_id"]}
    if action == "complete":
        return c.post("/api/transfer/complete", json=tid, headers=h)
    if action == "cancel":
        return c.post("/api/transfer/cancel", json=tid, headers=h)
    if action == "decline":
        return c.post("/api/transfer/decline", json={**tid, "reason": reason}, headers=h)
    if action == "initiate":
        return c.post("/api/transfer/initiate", json={"call_id": call["call_id"], "target": "agent-c"}, headers=h)
    if action == "get":
        return c.get(f"/api/transfer/{t['transfer_id']}", headers=h)
    if action == "token_call":
        return c.post("/api/tokens", json={"role": "agent", "room": call["room"]}, headers=h)
    if action == "token_consult":
        return c.post("/api/tokens", json={"role": "agent", "room": t["consult_room"]}, headers=h)
    return c.post(f"/api/rooms/{call['room']}/end", headers=h)


# (action, actor) pairs that may change state; everything else must be refused or read-only.
ALLOWED = {("complete", A), ("complete", B), ("cancel", A), ("decline", B), ("end", A)}
READ_ONLY = {("get", A), ("get", B), ("token_consult", A), ("token_consult", B)}


@settings(max_examples=MAX_EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    action=st.sampled_from(ACTIONS),
    actor=st.sampled_from(ACTORS),
    reason=st.text(max_size=250),
)
def test_transfer_actions_with_real_ids_change_state_only_when_allowed(world, served, action, actor, reason):
    ctx = served.app.state.ctx
    if world.t is None or ctx.store.get_transfer(world.t["transfer_id"]).state.value != "consulting":
        world.fresh()
    before = _snapshot(ctx, world.call["call_id"])
    r = _request(world, action, actor, reason)
    STATS[r.status_code] += 1
    assert r.status_code < 500, f"{action} by {actor}: {r.status_code} {r.text[:300]}"
    if (action, actor) in ALLOWED and r.status_code < 300:
        state = ctx.store.get_transfer(world.t["transfer_id"]).state.value
        expected = {"complete": "completing", "cancel": "cancelled", "decline": "declined", "end": "caller_left"}
        assert state == expected[action] or (action == "complete" and state in ("completed", "failed")), state
        return
    if (action, actor) not in READ_ONLY:
        assert r.status_code >= 400, f"{action} by {actor} was accepted: {r.text[:300]}"
        body = r.json()
        assert isinstance(body["detail"], str) and body["detail"]
    assert _snapshot(ctx, world.call["call_id"]) == before, f"{action} by {actor} ({r.status_code}) changed state"
