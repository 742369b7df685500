"""Actions that cost money or ring someone happen once: one outbound phone call per transfer
however often `POST /api/twilio/dial` is repeated (sequentially or at once), and an
`Idempotency-Key` makes a repeated initiate / complete / dial return the first response and
change nothing.

Peers: the real app (ASGI, in process) on the session's real livekit-server, and the real
twilio SDK sending its REST requests to the Twilio REST recorder on loopback
(`tests/support/twilio_recorder.py`), whose `creates()` are the `calls.create` Twilio saw."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.api.conftest import PHONE_TARGET, agent_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
A, B, C = "agent-a", "agent-b", "agent-c"


def snapshot(ctx) -> str:
    calls = [c.model_dump(mode="json") for c in ctx.store.list_calls(include_ended=True)]
    transfers = [t.model_dump(mode="json") for t in ctx.store.list_transfers()]
    return json.dumps({"calls": calls, "transfers": transfers}, sort_keys=True)


async def start_call(client) -> dict:
    r = await client.post(
        "/api/rooms/create", json={"caller_name": "Maria Lopez", "agent_identity": A}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    return r.json()["call"]


async def test_repeated_dial_places_one_call(phone_client, phone_app, recorder):
    ctx = phone_app.state.ctx
    call = await start_call(phone_client)
    r = await phone_client.post(
        "/api/transfer/initiate", json={"call_id": call["call_id"], "target": PHONE_TARGET}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    tid = r.json()["transfer_id"]
    [create] = recorder.creates()  # initiate dialed the target once
    leg_sid = ctx.phone.leg(tid).call_sid
    assert leg_sid and create.one("To") == PHONE_TARGET

    dial = {"transfer_id": tid, "to": PHONE_TARGET}
    sequential = [await phone_client.post("/api/twilio/dial", json=dial, headers=agent_headers(A)) for _ in range(5)]
    concurrent = await asyncio.gather(
        *(phone_client.post("/api/twilio/dial", json=dial, headers=agent_headers(A)) for _ in range(5))
    )
    for r in [*sequential, *concurrent]:
        assert r.status_code == 200, r.text
        assert r.json()["call_sid"] == leg_sid and r.json()["to"] == PHONE_TARGET
    # Ten dials later Twilio was still asked to place exactly one call.
    assert len(recorder.creates()) == 1
    print(f"\n[idempotency] initiate + 10 dials: {len(recorder.creates())} calls.create at the recorder")

    # A dial that names another number is refused, and dials nothing either.
    r = await phone_client.post(
        "/api/twilio/dial", json={"transfer_id": tid, "to": "+14155550199"}, headers=agent_headers(A)
    )
    assert r.status_code == 422 and len(recorder.creates()) == 1


async def test_idempotency_key_replays_initiate_and_dial(phone_client, phone_app, recorder):
    ctx = phone_app.state.ctx
    call = await start_call(phone_client)
    body = {"call_id": call["call_id"], "target": PHONE_TARGET}
    h = {**agent_headers(A), "Idempotency-Key": "initiate-7f3c"}
    first = await phone_client.post("/api/transfer/initiate", json=body, headers=h)
    assert first.status_code == 201, first.text
    before = snapshot(ctx)
    for _ in range(3):
        again = await phone_client.post("/api/transfer/initiate", json=body, headers=h)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert snapshot(ctx) == before and len(recorder.creates()) == 1

    # Without the key the repeat is what it always was: the call already has an open transfer.
    r = await phone_client.post("/api/transfer/initiate", json=body, headers=agent_headers(A))
    assert r.status_code == 409
    # The same key with another body is a client bug: refused, nothing changes.
    r = await phone_client.post("/api/transfer/initiate", json={**body, "target": B}, headers=h)
    assert r.status_code == 422 and "different request" in r.json()["detail"]
    assert snapshot(ctx) == before

    tid = first.json()["transfer_id"]
    dial_h = {**agent_headers(A), "Idempotency-Key": "dial-1"}
    dials = [
        await phone_client.post("/api/twilio/dial", json={"transfer_id": tid, "to": PHONE_TARGET}, headers=dial_h)
        for _ in range(3)
    ]
    assert [r.status_code for r in dials] == [200, 200, 200]
    assert dials[0].json() == dials[1].json() == dials[2].json()
    assert "Idempotent-Replayed" not in dials[0].headers and dials[2].headers["Idempotent-Replayed"] == "true"
    assert len(recorder.creates()) == 1 and snapshot(ctx) == before


async def test_idempotency_key_replays_complete_and_is_per_agent(client, ctx, online):
    call = await start_call(client)
    await online(B)
    r = await client.post(
        "/api/transfer/initiate", json={"call_id": call["call_id"], "target": B}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    tid = r.json()["transfer_id"]

    h = {**agent_headers(B), "Idempotency-Key": "accept-42"}
    first = await client.post("/api/transfer/complete", json={"transfer_id": tid}, headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["transfer"]["state"] == "completing" and first.json()["join"]["room"] == call["room"]
    events = [e["to_state"] for e in first.json()["transfer"]["events"]]
    again = await client.post("/api/transfer/complete", json={"transfer_id": tid}, headers=h)
    assert again.status_code == 200 and again.json() == first.json()  # the same join token, too
    log = [e.to_state.value for e in ctx.store.get_transfer(tid).events]
    assert log[: len(events)] == events and log.count("completing") == 1  # accepted once

    # Without a key, a second accept is refused as before.
    r = await client.post("/api/transfer/complete", json={"transfer_id": tid}, headers=agent_headers(B))
    assert r.status_code == 409
    # Keys belong to the agent that sent them: A's "accept-42" is A's own (and A's request runs).
    r = await client.post(
        "/api/transfer/complete",
        json={"transfer_id": tid},
        headers={**agent_headers(A), "Idempotency-Key": "accept-42"},
    )
    assert r.status_code == 409 and "Idempotent-Replayed" not in r.headers


async def test_a_refused_request_is_not_remembered(client, ctx, online):
    """Only successes are kept: a refused request changed nothing, so its repeat runs again."""
    call = await start_call(client)
    await online(B)
    await online(C)
    r = await client.post(
        "/api/transfer/initiate", json={"call_id": call["call_id"], "target": B}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    t1 = r.json()["transfer_id"]
    h = {**agent_headers(A), "Idempotency-Key": "to-c"}
    body = {"call_id": call["call_id"], "target": C}
    r = await client.post("/api/transfer/initiate", json=body, headers=h)
    assert r.status_code == 409  # t1 is still open
    r = await client.post("/api/transfer/cancel", json={"transfer_id": t1}, headers=agent_headers(A))
    assert r.status_code == 200, r.text
    first = await client.post("/api/transfer/initiate", json=body, headers=h)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers  # it ran
    again = await client.post("/api/transfer/initiate", json=body, headers=h)
    assert again.status_code == 201 and again.json() == first.json() and again.headers["Idempotent-Replayed"]
    assert len(ctx.store.list_transfers(call_id=call["call_id"])) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
async def test_malformed_idempotency_keys_are_refused(client, ctx, key):
    call = await start_call(client)
    before = snapshot(ctx)
    r = await client.post(
        "/api/transfer/initiate",
        json={"call_id": call["call_id"], "target": B},
        headers={**agent_headers(A), "Idempotency-Key": key},
    )
    assert r.status_code == 422 and "Idempotency-Key" in r.text
    assert snapshot(ctx) == before
