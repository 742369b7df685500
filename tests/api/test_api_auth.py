"""Authentication and input validation of every endpoint: no credential (401), wrong
credential or wrong role (403), another agent's call or transfer (403), another caller's
call (403), bad input (4xx with a clear message) — and every refused request leaves the
calls, the transfers and their event logs exactly as they were."""

from __future__ import annotations

import json

import httpx
import pytest

from app import create_app
from tests.api.conftest import API_KEY, PASSCODE, agent_headers, with_auth

pytestmark = pytest.mark.integration

A, B, Z = "agent-a", "agent-b", "agent-z"


def snapshot(ctx) -> str:
    """Everything a request could change: calls, transfers and their event logs."""
    store = ctx.store
    calls = [c.model_dump(mode="json") for c in store.list_calls(include_ended=True)]
    transfers = [t.model_dump(mode="json") for t in store.list_transfers()]
    return json.dumps({"calls": calls, "transfers": transfers}, sort_keys=True)


@pytest.fixture
async def world(client, ctx, online):
    """call1: agent-a with a consulting transfer t1 to agent-b; call2: a caller waiting."""
    r = await client.post(
        "/api/rooms/create", json={"caller_name": "Ann", "agent_identity": A}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    call1 = r.json()
    await online(B)  # a transfer's target is online and taking calls
    r = await client.post(
        "/api/transfer/initiate", json={"call_id": call1["call"]["call_id"], "target": B}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    t1 = r.json()
    r = await client.post("/api/rooms/create", json={"caller_name": "Bob"})  # B is consulting: it waits
    assert r.status_code == 201, r.text
    return {"call1": call1, "call2": r.json(), "t1": t1}


def agent_requests(w: dict) -> list[tuple[str, str, dict | None]]:
    """(method, path, json) for every endpoint that needs an agent credential."""
    c1, t1 = w["call1"]["call"], w["t1"]
    tid = {"transfer_id": t1["transfer_id"]}
    seg = {"segments": [{"speaker": "caller", "text": "hello"}]}
    return [
        ("POST", "/api/rooms/create", {"caller_name": "X", "agent_identity": A}),
        ("GET", f"/api/rooms/{c1['room']}", None),
        ("POST", f"/api/rooms/{w['call2']['call']['room']}/assign", None),
        ("POST", f"/api/rooms/{c1['room']}/end", None),
        ("POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": "agent-c"}),
        ("POST", "/api/transfer/complete", tid),
        ("POST", "/api/transfer/cancel", tid),
        ("POST", "/api/transfer/decline", tid),
        ("GET", f"/api/transfer/{t1['transfer_id']}", None),
        ("POST", "/api/summary/generate", seg),
        ("POST", "/api/speech/generate", {"text": "hello"}),
        ("POST", "/api/tokens", {"role": "agent", "room": c1["room"]}),
        ("POST", "/api/twilio/dial", {"transfer_id": t1["transfer_id"], "to": "+14155550123"}),
        ("GET", "/api/twilio/calls", None),
    ]


async def send(client: httpx.AsyncClient, method: str, path: str, body: dict | None, headers: dict) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"] and body["error"]
    for w in words:
        assert w.lower() in body["detail"].lower(), body["detail"]


async def test_agent_endpoints_refuse_missing_and_wrong_credentials(client, ctx, world):
    before = snapshot(ctx)
    ticket = world["call2"]["caller_ticket"]
    caller_id = world["call2"]["caller_identity"]
    for method, path, body in agent_requests(world):
        # No credential at all (the identity alone proves nothing).
        r = await send(client, method, path, body, {"X-Agent-Identity": A})
        assert_error(r, 401, "credential")
        # Wrong API key, wrong passcode.
        r = await send(client, method, path, body, {"X-Agent-Identity": A, "X-API-Key": "wrong-key"})
        assert_error(r, 403)
        r = await send(client, method, path, body, {"X-Agent-Identity": A, "X-Agent-Passcode": "wrong"})
        assert_error(r, 403)
        # Wrong role: a caller presenting its ticket as if it were an agent credential.
        r = await send(client, method, path, body, {"X-Agent-Identity": caller_id, "X-API-Key": ticket})
        assert_error(r, 403)
        # Wrong role: a valid key, but claiming a caller's (or the server's) identity.
        for ident in (caller_id, f"media-{world['call1']['call']['call_id']}"):
            r = await send(client, method, path, body, agent_headers(ident))
            assert_error(r, 403, "reserved")
        # A credential but no identity.
        r = await send(client, method, path, body, {"X-API-Key": API_KEY})
        assert_error(r, 401, "X-Agent-Identity")
        assert r.headers["X-API-Version"] == "1"
    assert snapshot(ctx) == before


async def test_passcode_is_the_same_sign_in_as_the_ui(client, world):
    t1 = world["t1"]
    r = await client.get(
        f"/api/transfer/{t1['transfer_id']}", headers={"X-Agent-Identity": A, "X-Agent-Passcode": PASSCODE}
    )
    assert r.status_code == 200 and r.json()["state"] == "consulting"


async def test_agents_reach_only_their_own_calls_and_transfers(client, ctx, world):
    c1, t1 = world["call1"]["call"], world["t1"]
    tid = {"transfer_id": t1["transfer_id"]}
    before = snapshot(ctx)
    refused = [
        (Z, "GET", f"/api/rooms/{c1['room']}", None, "not on call"),
        (Z, "GET", f"/api/rooms/{t1['consult_room']}", None, "not part of transfer"),
        (B, "POST", f"/api/rooms/{c1['room']}/end", None, "not the agent"),
        (B, "POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": "agent-c"}, "not the agent"),
        (Z, "POST", "/api/transfer/complete", tid, "not part of transfer"),
        (B, "POST", "/api/transfer/cancel", tid, "only the agent who started"),
        (A, "POST", "/api/transfer/decline", tid, "only the transfer's target"),
        (Z, "POST", "/api/transfer/decline", tid, "only the transfer's target"),
        (Z, "GET", f"/api/transfer/{t1['transfer_id']}", None, "not part of transfer"),
        (Z, "POST", "/api/tokens", {"role": "agent", "room": c1["room"]}, "not on call"),
        (Z, "POST", "/api/tokens", {"role": "agent", "room": t1["consult_room"]}, "may not join"),
        (B, "POST", "/api/tokens", {"role": "agent", "room": c1["room"]}, "not on call"),  # not before accepting
        (A, "POST", "/api/tokens", {"role": "agent", "room": c1["room"]}, "on hold"),  # A would talk over the music
        (B, "POST", "/api/rooms/create", {"agent_identity": A}, "identity of the agent making the request"),
    ]
    for agent, method, path, body, words in refused:
        r = await send(client, method, path, body, agent_headers(agent))
        assert_error(r, 403, words)
    assert snapshot(ctx) == before
    # The rightful agents can: A and B read the transfer, B reads the consult room.
    for agent in (A, B):
        r = await client.get(f"/api/transfer/{t1['transfer_id']}", headers=agent_headers(agent))
        assert r.status_code == 200 and r.json()["events"][0]["actor"] == A


async def test_a_caller_gets_a_token_for_its_own_call_only(client, ctx, world):
    own, other = world["call2"], world["call1"]
    before = snapshot(ctx)
    body = {
        "role": "caller",
        "call_id": own["call"]["call_id"],
        "caller_identity": own["caller_identity"],
        "ticket": own["caller_ticket"],
    }
    r = await client.post("/api/tokens", json=body)
    assert r.status_code == 200 and r.json()["room"] == own["call"]["room"], r.text
    refused = [
        {**body, "call_id": other["call"]["call_id"]},  # own ticket, another call
        {**body, "call_id": other["call"]["call_id"], "caller_identity": other["caller_identity"]},
        {**body, "caller_identity": other["caller_identity"]},
        {**body, "ticket": "0" * 64},  # forged
        {**body, "ticket": other["caller_ticket"]},  # another caller's ticket for my call
    ]
    for b in refused:
        r = await client.post("/api/tokens", json=b)
        assert_error(r, 403, "ticket")
    # A caller cannot use its ticket for agent things.
    r = await client.post("/api/tokens", json={"role": "agent", "room": own["call"]["room"]})
    assert_error(r, 401)
    r = await client.post(
        "/api/tokens",
        json={"role": "agent", "room": own["call"]["room"]},
        headers={"X-Agent-Identity": own["caller_identity"], "X-API-Key": own["caller_ticket"]},
    )
    assert_error(r, 403)
    # Agent-only fields are refused for callers (no role confusion through extra fields).
    r = await client.post("/api/tokens", json={**body, "room": other["call"]["room"]})
    assert_error(r, 422, "extra")
    assert snapshot(ctx) == before


async def test_twilio_endpoints_answer_501_until_the_phone_is_set_up(client, world):
    t1 = world["t1"]
    r = await client.post(
        "/api/twilio/dial", json={"transfer_id": t1["transfer_id"], "to": "+14155550123"}, headers=agent_headers(A)
    )
    assert_error(r, 501, "TWILIO_ACCOUNT_SID")
    r = await client.get("/api/twilio/calls", headers=agent_headers(A))
    assert_error(r, 501, "TWILIO_ACCOUNT_SID")


async def test_bad_input_is_refused_with_a_clear_4xx_and_changes_nothing(client, ctx, world):
    c1, c2, t1 = world["call1"]["call"], world["call2"]["call"], world["t1"]
    tid = t1["transfer_id"]
    before = snapshot(ctx)
    h = agent_headers(A)
    cases: list[tuple[str, str, object, dict, int, str]] = [
        # too large: refused from Content-Length, before parsing
        ("POST", "/api/transfer/cancel", {"transfer_id": tid, "pad": "x" * 20_000}, h, 413, "at most"),
        ("POST", "/api/summary/generate", {"segments": [{"speaker": "caller", "text": "x" * 600_000}]}, h, 413, ""),
        # content limits
        ("POST", "/api/summary/generate", {"segments": [{"speaker": "caller", "text": "x" * 4001}]}, h, 422, "4000"),
        ("POST", "/api/summary/generate", {"segments": [{"speaker": "caller", "text": "x"}] * 1001}, h, 422, "1000"),
        (
            "POST",
            "/api/summary/generate",
            {"segments": [{"speaker": "caller", "text": "x" * 4000}] * 26},
            h,
            422,
            "100000",
        ),
        ("POST", "/api/summary/generate", {"segments": [{"speaker": "boss", "text": "x"}]}, h, 422, "speaker"),
        ("POST", "/api/speech/generate", {"text": "x" * 4001}, h, 422, "4000"),
        ("POST", "/api/speech/generate", {"text": ""}, h, 422, "text"),
        ("POST", "/api/speech/generate", {"text": "say\x00this"}, h, 422, "control"),
        ("POST", "/api/speech/generate", {"text": "   "}, h, 422, "nothing to say"),
        # malformed
        ("POST", "/api/transfer/cancel", b"{not json", h, 422, "json"),
        ("POST", "/api/transfer/cancel", {"transfer_id": tid, "extra": 1}, h, 422, "extra"),
        ("POST", "/api/transfer/cancel", {"transfer_id": "../../etc"}, h, 422, "transfer_id"),
        ("POST", "/api/transfer/cancel", [tid], h, 422, ""),
        ("POST", "/api/rooms/create", {"caller_name": "Eve\n<script>"}, {}, 422, "control"),
        ("POST", "/api/rooms/create", {"caller_name": "x" * 81}, {}, 422, "80"),
        ("GET", "/api/rooms/Call-UPPER", None, h, 422, "room_name"),
        ("GET", "/api/transfer/bad%20id", None, h, 422, "transfer_id"),
        ("POST", "/api/transfer/decline", {"transfer_id": tid, "reason": "r" * 201}, agent_headers(B), 422, "200"),
        # unknown things
        ("GET", "/api/transfer/ffffffffffff", None, h, 404, "no transfer"),
        ("GET", "/api/rooms/call-ffffffffffff", None, h, 404, "no room"),
        ("POST", "/api/transfer/complete", {"transfer_id": "ffffffffffff"}, h, 404, "no transfer"),
        ("POST", "/api/transfer/initiate", {"call_id": "ffffffffffff", "target": B}, h, 404, "no call"),
        # refused by the orchestrator before anything changes
        ("POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": "agent-c"}, h, 409, "open transfer"),
        ("POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": "+14155550123"}, h, 422, "twilio"),
        ("POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": A}, h, 422, ""),
        ("POST", "/api/transfer/initiate", {"call_id": c1["call_id"], "target": "caller-1"}, h, 422, "not a valid"),
        ("POST", f"/api/rooms/{c1['room']}/assign", None, h, 409, "not waiting"),
        ("POST", f"/api/rooms/{c2['room']}/end", None, h, 403, "not the agent"),
    ]
    for method, path, body, headers, status, words in cases:
        if isinstance(body, bytes):
            r = await client.request(
                method, path, content=body, headers={**headers, "Content-Type": "application/json"}
            )
        else:
            r = await client.request(method, path, json=body, headers=headers)
        assert_error(r, status, words)
        assert "x" * 50 not in r.text and "<script>" not in r.text  # input is never echoed back
    # A NaN (Python's json accepts it) is refused, not stored or passed on.
    r = await client.post(
        "/api/summary/generate",
        content=b'{"segments": [{"speaker": "caller", "text": "hi", "start": NaN}]}',
        headers={**h, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "start")
    assert snapshot(ctx) == before

    # Illegal state changes: 409, and the log keeps exactly its legal events.
    r = await client.post("/api/transfer/cancel", json={"transfer_id": tid}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    after_cancel = snapshot(ctx)
    for agent, path in ((B, "/api/transfer/complete"), (B, "/api/transfer/decline"), (A, "/api/transfer/cancel")):
        r = await client.post(path, json={"transfer_id": tid}, headers=agent_headers(agent))
        assert_error(r, 409, "cannot go from 'cancelled'")
    assert snapshot(ctx) == after_cancel
    events = ctx.store.get_transfer(tid).events
    assert [(e.to_state.value, e.actor) for e in events] == [("consulting", A), ("cancelled", A)]


async def test_cors_is_closed_by_default_and_opens_to_configured_origins(api_settings):
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    closed = create_app(api_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=closed), base_url="http://t") as c:
        # Not even through the UI mounted at `/` (Gradio would answer preflights itself otherwise).
        for path in ("/api/transfer/cancel", "/api/tokens", "/"):
            r = await c.options(path, headers=preflight)
            assert "access-control-allow-origin" not in r.headers, (path, r.headers)
        r = await c.get("/api", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers

    opened = create_app(with_auth(api_settings, cors_origins="https://ui.example, https://ops.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=opened), base_url="http://t") as c:
        r = await c.options("/api/transfer/cancel", headers={**preflight, "Origin": "https://ui.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ui.example"
        r = await c.options("/api/transfer/cancel", headers=preflight)
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
