"""`kill -9` of the app's embedded livekit-server mid-consult (issue 15: the app did not notice, and
every call was silently gone while the store still said `on_hold`).

The app notices within 2 s, logs it, ends the open call with a reason (the store, and what the UI's
desks are told: the app's event bus), starts the server again on the same port and keys, and
creates the agents' lobby anew; a new call then works end to end.

Peers: the real app (create_app, lifespan run, in process) with its own embedded livekit-server (not
the session's: that one is what this test kills) and no media worker (WORKERS=0: hold audio is not
what is tested; initiate goes on after HOLD_ACK_TIMEOUT_S without it); realtime-SDK peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from app import create_app
from control.context import LIVEKIT_DIED
from control.livekit_server import free_port
from control.rooms import Rooms
from control.transfer import LOBBY
from functions.events import Notification
from functions.models import CallStatus, TransferState
from functions.settings import load_settings
from tests.faults.conftest import API_KEY, headers
from tests.support.peer import Peer

DETECT_S = 2.0  # the bound: death noticed (and the calls ended) within this
A, B = "agent-a", "agent-b"


@pytest.mark.timeout(180)
async def test_livekit_server_killed_mid_consult(tmp_path, caplog):
    settings = load_settings(
        data_dir=tmp_path,
        livekit_url="",
        livekit_port=0,
        workers=0,
        app_port=free_port(),  # nothing listens there: webhooks are not what is tested
        api_key=SecretStr(API_KEY),
        openai_api_key="",
        openai_base_url="",
        twilio_account_sid="",
        live_transcription=False,
        hold_ack_timeout_s=0.5,
    )
    app = create_app(settings)
    peers: list[Peer] = []
    told: list[Notification] = []
    caplog.set_level(logging.INFO, logger="control.context")
    try:
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
            ctx = app.state.ctx
            ctx.bus.subscribe(told.append)  # what the UI's desks are told
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lk.test", timeout=30) as client:

                async def post(path: str, body: dict, agent: str | None = None) -> dict:
                    r = await client.post(f"/api{path}", json=body, headers=headers(agent) if agent else {})
                    assert r.status_code in (200, 201), r.text
                    return r.json()

                async def agent_peer(identity: str, room: str, hz: float | None) -> Peer:
                    tok = await post("/tokens", {"role": "agent", "room": room, "name": identity}, identity)
                    peers.append(p := Peer(identity, tone_hz=hz, listen=False))
                    return await p.connect(tok["url"], tok["token"])

                async def call_with_peers() -> tuple[dict, Peer, Peer]:
                    created = await post("/rooms/create", {"caller_name": "Maria Lopez", "agent_identity": A}, A)
                    call = created["call"]
                    ticket = {"call_id": call["call_id"], "caller_identity": created["caller_identity"]}
                    tok = await post("/tokens", {"role": "caller", **ticket, "ticket": created["caller_ticket"]})
                    peers.append(caller := Peer(created["caller_identity"], tone_hz=440))
                    await caller.connect(tok["url"], tok["token"])
                    peers.append(a := Peer(A, tone_hz=660))
                    a_tok = await post("/tokens", {"role": "agent", "room": call["room"], "name": A}, A)
                    await a.connect(a_tok["url"], a_tok["token"])
                    await caller.wait_hears(A, timeout=20)
                    await a.wait_hears(created["caller_identity"], timeout=20)
                    return call, caller, a

                call, _caller, _a = await call_with_peers()
                await agent_peer(B, LOBBY, None)  # B's desk: signed in and taking calls
                await post("/agents/availability", {"available": True}, B)
                started = time.monotonic()
                while not ctx.orchestrator.presence.is_online(B):  # its webhook, or the next RoomService sync
                    assert time.monotonic() - started < 30, "B never showed up online"
                    await asyncio.sleep(0.05)
                t = await post("/transfer/initiate", {"call_id": call["call_id"], "target": B}, A)
                await agent_peer(B, t["consult_room"], 880)
                old_pid = ctx.livekit.pid

                killed = time.monotonic()
                os.kill(old_pid, signal.SIGKILL)
                while ctx.store.get_call(call["call_id"]).status is not CallStatus.ended:
                    assert time.monotonic() - killed < DETECT_S + 3, "the open call was not ended"
                    await asyncio.sleep(0.02)
                took = time.monotonic() - killed
                print(f"\n[livekit killed] call ended {took:.2f} s after the kill")
                assert took <= DETECT_S, f"noticed after {took:.2f} s"

                # The store and the API say what happened, and why.
                r = await client.get(f"/api/transfer/{t['transfer_id']}", headers=headers(A))
                after = r.json()
                assert after["state"] == TransferState.failed.value and after["reason"] == LIVEKIT_DIED, after

                # The desks were told (on the app's event bus): the transfer, then the call. The store's
                # call row ends with the transfer (one transaction); "ended" is published once the
                # transfer's clean-up against the dead server has given up, so it is waited for (bounded).
                def kinds() -> list[tuple[str, str | None]]:
                    wire = [n.model_dump(mode="json") for n in told]  # as the desks' browsers get them
                    return [
                        (n["type"], n["payload"].get("transfer", {}).get("reason") or n["payload"].get("status"))
                        for n in wire
                    ]

                deadline = time.monotonic() + 5
                while ("call.status", "ended") not in kinds() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert ("transfer.failed", LIVEKIT_DIED) in kinds() and ("call.status", "ended") in kinds(), kinds()
                assert any(
                    f"the embedded livekit-server (pid {old_pid}) died (killed by signal 9)" in rec.getMessage()
                    for rec in caplog.records
                ), [rec.getMessage() for rec in caplog.records]

                # Started again, same port and keys; the lobby is back; a new call works end to end.
                deadline = time.monotonic() + 30
                while ctx.livekit_restarts < 1 or not ctx.livekit.ready():
                    assert time.monotonic() < deadline, "livekit-server was not started again"
                    await asyncio.sleep(0.1)
                assert ctx.livekit.pid != old_pid and ctx.settings.livekit_url.endswith(str(ctx.livekit.port))
                rooms = Rooms(ctx.settings)
                try:
                    assert await rooms.room_exists(LOBBY)
                finally:
                    await rooms.aclose()
                await agent_peer(B, LOBBY, None)
                again, _caller2, _a2 = await call_with_peers()
                assert ctx.store.get_call(again["call_id"]).status is CallStatus.active
                print(f"[livekit killed] restarted as pid {ctx.livekit.pid}; a new call connects")
    finally:
        await asyncio.gather(*(asyncio.wait_for(p.disconnect(), 10) for p in peers), return_exceptions=True)
        with contextlib.suppress(Exception):  # a failed start must not leave a server behind
            if app.state.ctx.livekit is not None:
                app.state.ctx.livekit.stop()
