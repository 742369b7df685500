"""Load (moved out of `make test`): 50 transfers' worth of API calls in parallel, against the real
livekit-server and media worker: every call room gets its call job, every initiate a consult job
with TTS. Afterwards every transfer's event log is exactly its own two events with its own actors,
and every call is back with its own agent A. Run: `.venv/bin/python -m pytest bench/ -s`."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app import create_app
from bench.test_capacity import PER_PROCESS, CallerProcess
from control.presence import LOBBY
from functions.tts.speech import EspeakSpeaker
from tests.api.conftest import agent_headers, with_auth
from tests.integration.conftest import end_everything

pytestmark = pytest.mark.integration

N = 50
INITIATES_IN_FLIGHT = int(os.environ.get("API_CONC_INFLIGHT", "50"))


@pytest.fixture
async def busy_client(control_settings, control_hub):
    # No timer may end a transfer while 50 of them are set up on 2 cores: this test is about
    # concurrent API calls; timers and live transcription have their own tests.
    s = with_auth(control_settings, ring_timeout_s=600, accept_timeout_s=600, live_transcription=False)
    app = create_app(s, speaker=EspeakSpeaker(s))
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        ctx = app.state.ctx
        unregister = control_hub.add(ctx.sinks)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=300) as c:
                yield c, ctx
        finally:
            await end_everything(ctx.orchestrator)
            unregister()


@pytest.mark.timeout(1200)  # measured 205-470 s on 2 shared cores, almost all of it in the 50 initiates
async def test_fifty_parallel_transfers_keep_their_own_state(busy_client):
    client, ctx = busy_client
    a = [f"agent-a{i:02d}" for i in range(N)]
    b = [f"agent-b{i:02d}" for i in range(N)]
    timings: dict[str, float] = {}

    async def post(path: str, body: dict, agent: str, status: int = 200) -> dict:
        r = await client.post(path, json=body, headers=agent_headers(agent))
        assert r.status_code == status, f"{path} {agent}: {r.status_code} {r.text}"
        return r.json()

    # 1. 50 calls, each started by its own agent A, in parallel.
    t0 = time.monotonic()
    calls = await asyncio.gather(
        *(
            post("/api/rooms/create", {"caller_name": f"Caller {i}", "agent_identity": a[i]}, a[i], 201)
            for i in range(N)
        )
    )
    timings["50 calls created"] = time.monotonic() - t0
    call_ids = [c["call"]["call_id"] for c in calls]
    assert len(set(call_ids)) == N

    # The 50 B agents are online (lobby connections in processes of their own, as their browsers would
    # be) and taking calls: a transfer's target must be.
    url = ctx.settings.livekit_url
    b_specs = []
    for agent in b:
        lobby = await post("/api/tokens", {"role": "agent", "room": LOBBY}, agent)
        b_specs.append({"identity": agent, "token": lobby["token"], "listen": False})
    agents = [CallerProcess(url, b_specs[i : i + PER_PROCESS]) for i in range(0, N, PER_PROCESS)]
    try:
        await asyncio.gather(*(g.ask() for g in agents))
        for i in range(N):
            await post("/api/agents/availability", {"available": True}, b[i])
        await ctx.orchestrator.presence.sync()
        await _transfers(client, ctx, post, a, b, call_ids, calls, timings)
    finally:
        await asyncio.gather(*(asyncio.to_thread(g.close) for g in agents))


async def _transfers(client, ctx, post, a, b, call_ids, calls, timings) -> None:
    # 2. 50 initiates in parallel (hold audio starts and a consult job is dispatched for each).
    t0 = time.monotonic()
    gate = asyncio.Semaphore(INITIATES_IN_FLIGHT)

    async def initiate(i: int) -> dict:
        async with gate:
            t = await post("/api/transfer/initiate", {"call_id": call_ids[i], "target": b[i]}, a[i], 201)
            return t

    transfers = await asyncio.gather(*(initiate(i) for i in range(N)))
    timings["50 initiates"] = time.monotonic() - t0
    for i, t in enumerate(transfers):
        assert (t["call_id"], t["from_agent"], t["target"], t["state"]) == (call_ids[i], a[i], b[i], "consulting")
    tids = [t["transfer_id"] for t in transfers]
    assert len(set(tids)) == N
    holds = await asyncio.gather(*(ctx.rooms.identities(c["call"]["room"]) for c in calls))
    missing = [call_ids[i] for i in range(N) if f"media-{call_ids[i]}" not in holds[i]]
    print(f"[api concurrency] {timings}", flush=True)
    assert not missing, f"{len(missing)} caller rooms without their call job"

    # 3. Half cancelled by their A, half declined by their B, in parallel, with reads of every
    #    transfer and wrong-actor attempts (which must change nothing) interleaved.
    async def finish(i: int) -> dict:
        if i % 2 == 0:
            return await post("/api/transfer/cancel", {"transfer_id": tids[i]}, a[i])
        return await post("/api/transfer/decline", {"transfer_id": tids[i], "reason": f"busy {i}"}, b[i])

    async def wrong_actor(i: int) -> None:
        j = (i + 1) % N  # another transfer's agent
        r = await client.post("/api/transfer/cancel", json={"transfer_id": tids[i]}, headers=agent_headers(a[j]))
        assert r.status_code == 403, r.text

    async def read(i: int) -> None:
        r = await client.get(f"/api/transfer/{tids[i]}", headers=agent_headers(a[i]))
        assert r.status_code == 200 and r.json()["transfer_id"] == tids[i] and r.json()["from_agent"] == a[i]

    t0 = time.monotonic()
    results = await asyncio.gather(
        *(finish(i) for i in range(N)), *(wrong_actor(i) for i in range(N)), *(read(i) for i in range(N))
    )
    timings["50 cancels/declines + 100 reads/refusals"] = time.monotonic() - t0
    for i, t in enumerate(results[:N]):
        assert t["transfer_id"] == tids[i] and t["state"] == ("cancelled" if i % 2 == 0 else "declined")

    # 4. Every transfer's log: exactly its own two events, its own actors, in order.
    t0 = time.monotonic()
    finals = await asyncio.gather(
        *(client.get(f"/api/transfer/{tids[i]}", headers=agent_headers(a[i])) for i in range(N))
    )
    for i, r in enumerate(finals):
        t = r.json()
        end, actor = ("cancelled", a[i]) if i % 2 == 0 else ("declined", b[i])
        assert [(e["transfer_id"], e["seq"], e["from_state"], e["to_state"], e["actor"]) for e in t["events"]] == [
            (tids[i], 1, "idle", "consulting", a[i]),
            (tids[i], 2, "consulting", end, actor),
        ], t["events"]
        assert t["events"][0]["detail"] == {"target": b[i]}
        if i % 2:
            assert t["reason"] == f"busy {i}"
    # Every call is back with its own A; the music and the consult rooms are gone.
    for i in range(N):
        call = ctx.store.get_call(call_ids[i])
        assert (call.status.value, call.agent_identity) == ("active", a[i])
    assert ctx.store.list_transfers(open_only=True) == []
    timings["state checks"] = time.monotonic() - t0
    print(f"\n[api concurrency] so far: {timings}", flush=True)

    # The server catches up: consult rooms (and their jobs) deleted.
    t0 = time.monotonic()
    consults = {t["consult_room"] for t in transfers}
    while True:
        rooms = {r.name for r in await ctx.rooms.list_rooms()}
        left = sorted(rooms & consults)
        if not left:
            break
        assert time.monotonic() - t0 < 60, f"still there after 60s: {left[:5]} ({len(left)})"
        await asyncio.sleep(0.5)
    timings["rooms cleaned up"] = time.monotonic() - t0

    report = ", ".join(f"{k}: {v:.1f}s" for k, v in timings.items())
    print(f"\n[api concurrency] {N} transfers — {report}")
