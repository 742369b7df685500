"""Actions that ring someone or cost money, repeated at once (a client's retries racing each other):
one phone leg per transfer however many dials arrive together (the issue's finding: five dials, five
200s, seven `calls.create`), one transfer per Idempotency-Key however many initiates carry it, one
accept per key. The repeats get the first answer, or a 409 that changes nothing.

Peers: the real app (ASGI, in process) on the session's livekit-server and media worker, with the real
twilio SDK sending its REST requests to the Twilio REST recorder on loopback
(tests/support/twilio_recorder.py: its `creates()` are the outbound legs Twilio was asked for).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.api.conftest import PHONE_TARGET, with_twilio
from tests.faults.conftest import Scene, headers, running_app

A, B = "agent-a", "agent-b"


@pytest.fixture
def recorder():
    from tests.support.twilio_recorder import TwilioRecorder

    with TwilioRecorder() as rec:
        yield rec


@pytest.fixture
async def phone_client(fault_settings, control_hub, recorder):
    settings = with_twilio(fault_settings, recorder.url)
    async with running_app(settings, control_hub) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base_url, timeout=60) as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


async def test_concurrent_repeats_place_one_leg_and_make_one_transfer(phone_client, recorder):
    ctx = phone_client.app.state.ctx
    created = await phone_client.post(
        "/api/rooms/create", json={"caller_name": "Maria Lopez", "agent_identity": A}, headers=headers(A)
    )
    call = created.json()["call"]

    # Five initiates with one key, at once: one transfer, one outbound leg; every answer is the first.
    body = {"call_id": call["call_id"], "target": PHONE_TARGET}
    keyed = {**headers(A), "Idempotency-Key": "initiate-once"}
    answers = await asyncio.gather(
        *(phone_client.post("/api/transfer/initiate", json=body, headers=keyed) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1
    assert len(ctx.store.list_transfers(call_id=call["call_id"])) == 1
    tid = answers[0].json()["transfer_id"]
    assert len(recorder.creates()) == 1

    # Ten dials at once, keyed and not: the leg initiate placed is every answer; Twilio saw one create.
    dial = {"transfer_id": tid, "to": PHONE_TARGET}
    dials = await asyncio.gather(
        *(phone_client.post("/api/twilio/dial", json=dial, headers=headers(A)) for _ in range(5)),
        *(
            phone_client.post("/api/twilio/dial", json=dial, headers={**headers(A), "Idempotency-Key": "dial-1"})
            for _ in range(5)
        ),
    )
    assert {r.status_code for r in dials} == {200}, [r.text for r in dials]
    assert {r.json()["call_sid"] for r in dials} == {ctx.phone.leg(tid).call_sid}
    assert len(recorder.creates()) == 1
    print(f"\n[idempotency] 5 initiates + 10 dials at once: {len(recorder.creates())} calls.create")

    # Once the transfer is over, a dial is refused and dials nothing.
    assert (
        await phone_client.post("/api/transfer/cancel", json={"transfer_id": tid}, headers=headers(A))
    ).status_code == 200
    late = await phone_client.post("/api/twilio/dial", json=dial, headers=headers(A))
    assert late.status_code == 409 and len(recorder.creates()) == 1


async def test_concurrent_accepts_with_one_key_accept_once(scene: Scene):
    await scene.start()
    assert (await scene.initiate()).status_code == 201
    await scene.join_consult()
    keyed = {**headers(scene.b_id), "Idempotency-Key": "accept-once"}
    answers = await asyncio.gather(
        *(
            scene.client.post("/api/transfer/complete", json={"transfer_id": scene.tid}, headers=keyed)
            for _ in range(3)
        ),
        scene.client.post("/api/transfer/complete", json={"transfer_id": scene.tid}, headers=headers(scene.b_id)),
    )
    keyed_answers, bare = answers[:3], answers[3]
    codes = [r.status_code for r in keyed_answers], bare.status_code
    # One accept ran: the keyed ones share its answer (their repeats replay it), or the bare one won and
    # the keyed ones got the conflict; either way a 409 changed nothing.
    assert codes in (([200, 200, 200], 409), ([409, 409, 409], 200)), codes
    winner = keyed_answers[0] if bare.status_code == 409 else bare
    if bare.status_code == 409:
        assert len({r.text for r in keyed_answers}) == 1
    t = await scene.db_transfer()
    assert [e["to_state"] for e in t["events"]].count("completing") == 1
    await scene.b_joins_call(winner.json()["join"]["token"])
    await scene.assert_with_b()
