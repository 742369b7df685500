"""A database that cannot be written (read-only, disk full) answers JSON in the API's error
shape, 503 with Retry-After (retryable), at /api and at /twilio: never a plain-text 500, and
the same request succeeds once the database is writable again.

Peers: the real app (ASGI, in process) on the session's real livekit-server; for /twilio the
real twilio SDK against the Twilio REST recorder on loopback, and webhooks signed with the
SDK's RequestValidator. The tests run as root, which ignores file modes, so read-only and a full
disk are SQLite's own pragmas on the app's connections (tests/support/sqlite_faults.py): the same
SQLITE_READONLY / SQLITE_FULL errors a read-only mount or a full disk raise."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from tests.api.conftest import PHONE_TARGET, PUBLIC, TWILIO_SID, TWILIO_TOKEN, agent_headers
from tests.support.sqlite_faults import SqliteFaults

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
A, B = "agent-a", "agent-b"


LEGS = "phone_legs.sqlite3"


@pytest.fixture
def faults() -> SqliteFaults:
    return SqliteFaults()


@pytest.fixture
def store_connection(faults):
    return faults.connection


def assert_unavailable(r, *words: str) -> None:
    assert r.status_code == 503, f"{r.request.url.path}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == "StorageUnavailable" and r.headers["Retry-After"] == "1"
    for w in words:
        assert w in body["detail"], body["detail"]


async def test_read_only_database_answers_503_json_and_recovers(client, ctx, online, faults):
    db = ctx.settings.database_path.name
    r = await client.post(
        "/api/rooms/create", json={"caller_name": "Ann", "agent_identity": A}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    call = r.json()["call"]
    await online(B)
    faults.read_only(db)
    try:
        r = await client.post("/api/rooms/create", json={"caller_name": "Bob"})
        assert_unavailable(r, "read-only", "try again")
        assert r.headers["X-API-Version"] == "1"
        r = await client.post(
            "/api/transfer/initiate", json={"call_id": call["call_id"], "target": B}, headers=agent_headers(A)
        )
        assert_unavailable(r, "read-only")
        # Reads still work, and nothing was half-written.
        r = await client.get(f"/api/rooms/{call['room']}", headers=agent_headers(A))
        assert r.status_code == 200 and r.json()["call_status"] == "active"
        assert ctx.store.list_transfers(call_id=call["call_id"]) == []
    finally:
        faults.read_only(db, on=False)
    r = await client.post(
        "/api/transfer/initiate", json={"call_id": call["call_id"], "target": B}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text  # the retry succeeds


async def test_full_disk_answers_503_json(client, ctx, faults):
    db = ctx.settings.database_path.name
    rooms_before = {r.name for r in await ctx.rooms.list_rooms()}
    faults.disk_full(db)
    try:
        for _ in range(300):  # until the capped file has no page left (a few dozen calls)
            r = await client.post("/api/rooms/create", json={"caller_name": "x" * 80})
            if r.status_code != 201:
                break
        assert_unavailable(r, "disk is full")
        # The row comes first: no LiveKit room was left behind for the call that could not be stored.
        new_rooms = {r.name for r in await ctx.rooms.list_rooms()} - rooms_before
        stored = {c.room for c in ctx.store.list_calls(include_ended=True)}
        assert new_rooms <= stored, f"rooms without a call row: {sorted(new_rooms - stored)}"
    finally:
        faults.disk_full(db, full=False)
    r = await client.post("/api/rooms/create", json={"caller_name": "After"})
    assert r.status_code == 201, r.text


def signed(url: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, params)}


async def test_twilio_webhooks_answer_503_json_and_twilios_retry_applies(phone_client, phone_app, recorder, faults):
    ctx = phone_app.state.ctx
    r = await phone_client.post(
        "/api/rooms/create", json={"caller_name": "Ann", "agent_identity": A}, headers=agent_headers(A)
    )
    call = r.json()["call"]
    r = await phone_client.post(
        "/api/transfer/initiate", json={"call_id": call["call_id"], "target": PHONE_TARGET}, headers=agent_headers(A)
    )
    assert r.status_code == 201, r.text
    tid = r.json()["transfer_id"]
    url = f"{PUBLIC}/twilio/status?tid={tid}"
    params = {"CallSid": ctx.phone.leg(tid).call_sid, "AccountSid": TWILIO_SID, "CallStatus": "busy"}

    # The phone legs' own file is read-only: the webhook's replay log cannot be written.
    faults.read_only(LEGS)
    try:
        r = await phone_client.post(url, data=params, headers=signed(url, params))
        assert_unavailable(r, "read-only")
    finally:
        faults.read_only(LEGS, on=False)

    # The transfers' database is read-only: the outcome (busy → declined) cannot be saved.
    db = ctx.settings.database_path.name
    faults.read_only(db)
    try:
        r = await phone_client.post(url, data=params, headers=signed(url, params))
        assert_unavailable(r, "read-only")
    finally:
        faults.read_only(db, on=False)
    assert ctx.store.get_transfer(tid).state.value == "consulting"

    # Writable again: Twilio's retry of the very same request is applied (it was not marked seen).
    r = await phone_client.post(url, data=params, headers=signed(url, params))
    assert r.status_code == 204, r.text
    assert ctx.store.get_transfer(tid).state.value == "declined"


async def test_twilio_refusals_are_json_too(phone_client):
    r = await phone_client.post(f"{PUBLIC}/twilio/status?tid=abc", data={"CallSid": "CA" + "0" * 32})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    r = await phone_client.post(f"{PUBLIC}/twilio/status?tid=abc", content=b"a=" + b"x" * 40_000)
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
