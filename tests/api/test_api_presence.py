"""Presence and routing over HTTP: the API shares the UI's presence, so a call created through the
API rings an available agent, and a transfer to an agent or queue nobody can take is refused
(422 unknown, 409 unavailable or empty) with nothing changed.

Peers: the real app (`create_app`, lifespan run, ASGI in process) on the session's livekit-server
and media worker; agents are realtime-SDK participants in the lobby with tokens from the API."""

from __future__ import annotations

import pytest

from tests.api.conftest import agent_headers, with_auth
from tests.api.test_api_auth import snapshot

pytestmark = pytest.mark.integration
A, B, C = "agent-a", "agent-b", "agent-c"


@pytest.fixture
def api_settings(control_settings):
    return with_auth(control_settings, live_transcription=False, agent_skills=f"{B}:billing,{C}:billing|returns")


async def agents(client) -> dict[str, str]:
    r = await client.get("/api/agents", headers=agent_headers(A))
    assert r.status_code == 200, r.text
    return {a["identity"]: a["state"] for a in r.json()["agents"]}


async def test_a_call_created_over_the_api_rings_an_available_agent(client, ctx, online):
    assert (await agents(client))[B] == "offline"  # configured (AGENT_SKILLS), not connected
    b_lobby = await online(B)
    assert (await agents(client))[B] == "available"
    r = await client.post("/api/rooms/create", json={"caller_name": "Maria Lopez"})
    assert r.status_code == 201, r.text
    call = r.json()["call"]
    rang = await b_lobby.wait_message(lambda m: m["type"] == "call.incoming")
    assert rang["payload"] == {"call_id": call["call_id"], "caller_name": "Maria Lopez", "offered_to": B}
    assert (await agents(client))[B] == "ringing"
    r = await client.get("/api/calls/waiting", headers=agent_headers(B))
    assert [(c["call_id"], c["ringing"], c["place"]) for c in r.json()["calls"]] == [(call["call_id"], B, 1)]
    assert (await client.get("/api/calls/waiting", headers=agent_headers(A))).json()["calls"] == []
    r = await client.post(f"/api/rooms/{call['room']}/assign", headers=agent_headers(A))
    assert r.status_code == 409 and "ringing" in r.json()["detail"]
    r = await client.post(f"/api/rooms/{call['room']}/assign", headers=agent_headers(B))
    assert r.status_code == 200 and r.json()["agent_identity"] == B
    assert (await agents(client))[B] == "on_call"


async def test_transfers_nobody_can_take_are_refused_and_change_nothing(client, ctx, online):
    r = await client.post(
        "/api/rooms/create", json={"caller_name": "Ann", "agent_identity": A}, headers=agent_headers(A)
    )
    call = r.json()["call"]
    await online(C)
    r = await client.post("/api/agents/availability", json={"available": False}, headers=agent_headers(C))
    assert r.status_code == 200 and r.json()["state"] == "away"
    before = snapshot(ctx)
    rooms_before = {room.name for room in await ctx.rooms.list_rooms()}
    cases = [
        ({"target": "agent-nobody"}, 422, "there is no agent 'agent-nobody'"),
        ({"target": B}, 409, f"{B} is offline"),
        ({"target": C}, 409, "not taking calls"),
        ({"target": "billing", "target_kind": "queue"}, 409, "nobody in billing is available"),
        ({"target": "queue:sales"}, 422, "there is no queue 'sales'"),
        ({"target_kind": "hunt", "targets": [B, "queue:returns"]}, 409, "nobody on the hunt list"),
        ({"target_kind": "hunt", "targets": ["agent-nobody"]}, 422, "there is no agent"),
        ({"target": ""}, 422, "give a target"),
    ]
    for body, status, words in cases:
        r = await client.post(
            "/api/transfer/initiate", json={"call_id": call["call_id"], **body}, headers=agent_headers(A)
        )
        assert (r.status_code, words in r.json()["detail"]) == (status, True), (body, r.text)
    assert snapshot(ctx) == before
    assert {room.name for room in await ctx.rooms.list_rooms()} == rooms_before  # no consult room either

    # C takes calls again: the queue transfer goes to C, the one available agent of billing.
    await client.post("/api/agents/availability", json={"available": True}, headers=agent_headers(C))
    r = await client.post(
        "/api/transfer/initiate",
        json={"call_id": call["call_id"], "target": "billing", "target_kind": "queue"},
        headers=agent_headers(A),
    )
    assert r.status_code == 201, r.text
    assert (r.json()["target"], r.json()["route"]) == (C, ["queue:billing"])
    r = await client.get("/api/agents", headers=agent_headers(A))
    assert {q["name"]: q["available"] for q in r.json()["queues"]} == {"billing": 0, "returns": 0}
