"""A complete warm transfer driven through the HTTP API alone, against the real
livekit-server, with realtime-SDK participants (tones: caller 440 Hz, A 660 Hz,
B 880 Hz) joining with the tokens the API hands out. Room membership and transfer
state are read back through the API at every step; what each peer hears is measured
on decoded audio."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import wave

import pytest

from tests.api.conftest import agent_headers, wait_transfer_state, with_auth
from tests.support.peer import Peer

pytestmark = pytest.mark.integration

CALLER_HZ, A_HZ, B_HZ = 440, 660, 880
A, B = "agent-a", "agent-b"


@pytest.fixture
def api_settings(control_settings):
    """The app as deployed: live transcription on (the call job transcribes every call room)."""
    return with_auth(control_settings, live_transcription=True)


async def members(client, room: str, agent: str) -> dict[str, str]:
    """identity → role, as GET /api/rooms/{room} reports it."""
    r = await client.get(f"/api/rooms/{room}", headers=agent_headers(agent))
    assert r.status_code == 200, r.text
    return {p["identity"]: p["role"] for p in r.json()["participants"]}


async def wait_members(client, room: str, agent: str, expected: dict[str, str], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    got: dict[str, str] = {}
    while asyncio.get_running_loop().time() < deadline:
        got = await members(client, room, agent)
        if got == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{room}: members {got}, expected {expected}")


async def token(client, body: dict, headers: dict | None = None) -> dict:
    r = await client.post("/api/tokens", json=body, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


class HttpWorld:
    """A caller who starts a call over HTTP, agent A who picks it up, B in the lobby."""

    def __init__(self, client) -> None:
        self.client = client
        self.peers: list[Peer] = []

    def peer(self, identity: str, hz: float | None) -> Peer:
        p = Peer(identity, tone_hz=hz)
        self.peers.append(p)
        return p

    async def start(self) -> HttpWorld:
        c = self.client
        r = await c.post("/api/rooms/create", json={"caller_name": "Maria Lopez"})
        assert r.status_code == 201, r.text
        created = r.json()
        self.call = created["call"]
        self.room = self.call["room"]
        self.caller_id = created["caller_identity"]
        self.media_id = f"media-{self.call['call_id']}"
        assert self.call["status"] == "waiting" and self.call["agent_identity"] is None

        tok = await token(
            c,
            {
                "role": "caller",
                "call_id": self.call["call_id"],
                "caller_identity": self.caller_id,
                "ticket": created["caller_ticket"],
            },
        )
        assert tok["room"] == self.room and tok["identity"] == self.caller_id
        self.url = tok["url"]
        self.caller = await self.peer(self.caller_id, CALLER_HZ).connect(self.url, tok["token"])
        await wait_members(c, self.room, A, {self.caller_id: "caller", self.media_id: "service"})

        r = await c.post(f"/api/rooms/{self.room}/assign", headers=agent_headers(A))
        assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["agent_identity"] == A, r.text
        tok = await token(c, {"role": "agent", "room": self.room, "name": "Alice"}, agent_headers(A))
        self.a = await self.peer(A, A_HZ).connect(self.url, tok["token"])
        lobby = await token(c, {"role": "agent", "room": "agents-lobby"}, agent_headers(B))
        self.b_lobby = await self.peer(B, None).connect(self.url, lobby["token"])
        r = await c.post("/api/agents/availability", json={"available": True}, headers=agent_headers(B))
        assert r.status_code == 200 and r.json()["queues"] == [], r.text  # B takes calls (transfers) now
        await self.caller.wait_hears(A)
        await self.a.wait_hears(self.caller_id)
        await wait_members(c, self.room, A, {self.caller_id: "caller", A: "agent", self.media_id: "service"})
        return self

    async def initiate(self) -> dict:
        r = await self.client.post(
            "/api/transfer/initiate", json={"call_id": self.call["call_id"], "target": B}, headers=agent_headers(A)
        )
        assert r.status_code == 201, r.text
        self.transfer = r.json()
        return self.transfer

    async def join_consult(self) -> None:
        room = self.transfer["consult_room"]
        ta = await token(self.client, {"role": "agent", "room": room}, agent_headers(A))
        tb = await token(self.client, {"role": "agent", "room": room}, agent_headers(B))
        self.a_consult = await self.peer(A, A_HZ).connect(self.url, ta["token"])
        self.b_consult = await self.peer(B, B_HZ).connect(self.url, tb["token"])

    async def close(self) -> None:
        for p in self.peers:
            with contextlib.suppress(Exception):
                await p.disconnect()


@pytest.fixture
async def http_world(client):
    w = await HttpWorld(client).start()
    yield w
    await w.close()


async def test_complete_warm_transfer_over_http(client, http_world):
    w = http_world
    hold_id = w.media_id  # the call job: there all call long, audible while on hold

    # 1. Initiate: the caller is on hold, the consult room exists, the call says on_hold.
    t = await w.initiate()
    tid = t["transfer_id"]
    assert t["state"] == "consulting" and t["from_agent"] == A and t["target"] == B
    assert [e["to_state"] for e in t["events"]] == ["consulting"]
    await wait_members(client, w.room, A, {w.caller_id: "caller", A: "agent", hold_id: "service"})
    room = (await client.get(f"/api/rooms/{w.room}", headers=agent_headers(A))).json()
    assert room["kind"] == "call" and room["call_status"] == "on_hold"
    await w.caller.wait_hears(hold_id)
    await w.caller.wait_not_hears(A)
    await w.a.wait_not_hears(w.caller_id)
    await w.caller.wait_hears_only({hold_id})
    offer = await w.b_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
    assert offer["payload"]["transfer"]["transfer_id"] == tid
    # B may not join the caller's room before accepting.
    r = await client.post("/api/tokens", json={"role": "agent", "room": w.room}, headers=agent_headers(B))
    assert r.status_code == 403, r.text

    # 2. Consult: A and B talk, B hears the brief; the caller only hears the music.
    await w.join_consult()
    briefing_id = f"briefing-{tid}"
    await wait_members(client, t["consult_room"], B, {A: "agent", B: "agent", briefing_id: "service"})
    consult = (await client.get(f"/api/rooms/{t['consult_room']}", headers=agent_headers(B))).json()
    assert consult["kind"] == "consult" and consult["transfer_id"] == tid and consult["transfer_state"] == "consulting"
    await w.a_consult.wait_hears(B)
    await w.b_consult.wait_hears(A)
    await w.b_consult.wait_hears(briefing_id, timeout=15)
    await w.caller.wait_hears_only({hold_id})

    # 3. Complete (B accepts): B gets its token for the caller's room in the answer.
    r = await client.post("/api/transfer/complete", json={"transfer_id": tid}, headers=agent_headers(B))
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["transfer"]["state"] == "completing" and done["join"]["room"] == w.room
    b_call = await w.peer(B, B_HZ).connect(w.url, done["join"]["token"])
    final = await wait_transfer_state(client, tid, B, "completed")
    assert [e["to_state"] for e in final["events"]] == ["consulting", "completing", "completed"]
    assert [e["actor"] for e in final["events"]] == [A, B, "system"]

    # 4. After: the caller's room holds exactly the caller and B; A and the music are gone.
    await wait_members(client, w.room, B, {w.caller_id: "caller", B: "agent", hold_id: "service"})
    await w.caller.wait_hears(B)
    await b_call.wait_hears(w.caller_id)
    await w.caller.wait_not_hears(hold_id)
    await w.caller.wait_hears_only({B})
    assert abs(w.caller.dominant_hz(B) - B_HZ) < 15
    await w.a.disconnected.wait()
    room = (await client.get(f"/api/rooms/{w.room}", headers=agent_headers(B))).json()
    assert room["call_status"] == "active" and room["agent_identity"] == B
    r = await client.get(f"/api/rooms/{t['consult_room']}", headers=agent_headers(B))
    assert r.status_code == 200 and r.json()["participants"] == []  # the consult room was deleted
    # A is off the call now: A can no longer get into the caller's room.
    r = await client.post("/api/tokens", json={"role": "agent", "room": w.room}, headers=agent_headers(A))
    assert r.status_code == 403

    # 5. B ends the call over HTTP: the room is gone.
    r = await client.post(f"/api/rooms/{w.room}/end", headers=agent_headers(B))
    assert r.status_code == 200 and r.json()["status"] == "ended", r.text
    await w.caller.disconnected.wait()


async def test_cancel_over_http_returns_caller_to_a(client, http_world):
    w = http_world
    t = await w.initiate()
    await w.join_consult()
    await w.a_consult.wait_hears(B)
    r = await client.post("/api/transfer/cancel", json={"transfer_id": t["transfer_id"]}, headers=agent_headers(A))
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    await w.caller.wait_hears(A, timeout=10)
    await w.a.wait_hears(w.caller_id, timeout=10)
    await wait_members(client, w.room, A, {w.caller_id: "caller", A: "agent", w.media_id: "service"})
    room = (await client.get(f"/api/rooms/{w.room}", headers=agent_headers(A))).json()
    assert room["call_status"] == "active" and room["agent_identity"] == A


async def test_decline_over_http_returns_caller_to_a(client, http_world):
    w = http_world
    t = await w.initiate()
    await w.join_consult()
    await w.b_consult.wait_hears(f"briefing-{t['transfer_id']}", timeout=15)
    r = await client.post(
        "/api/transfer/decline",
        json={"transfer_id": t["transfer_id"], "reason": "not my queue"},
        headers=agent_headers(B),
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "declined" and r.json()["reason"] == "not my queue"
    await w.caller.wait_hears(A, timeout=10)
    await wait_members(client, w.room, A, {w.caller_id: "caller", A: "agent", w.media_id: "service"})
    events = (await client.get(f"/api/transfer/{t['transfer_id']}", headers=agent_headers(A))).json()["events"]
    assert [(e["to_state"], e["actor"]) for e in events] == [("consulting", A), ("declined", B)]


async def test_summary_and_streamed_speech(client):
    segments = [
        {
            "speaker": "caller",
            "text": "Hi, this is Maria Lopez. I was charged twice for order 58213.",
            "start": 0,
            "end": 4,
        },
        {"speaker": "agent:agent-a", "text": "I see two charges on order 58213.", "start": 4, "end": 6},
        {"speaker": "caller", "text": "I want a refund for the duplicate, please.", "start": 6, "end": 8},
    ]
    r = await client.post("/api/summary/generate", json={"segments": segments}, headers=agent_headers(A))
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["caller_name"] == "Maria Lopez"
    assert any(i["value"] == "58213" for i in summary["identifiers"])
    assert summary["brief"]

    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    r = await client.post("/api/speech/generate", json={"text": summary["brief"]}, headers=agent_headers(A))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    rate = int(r.headers["x-sample-rate"])
    body = r.content
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    pcm = body[44:]
    assert len(pcm) / 2 / rate > 1.0  # more than a second of speech
    # A streamed WAV has unknown sizes in its header; patched, it is an ordinary WAV file.
    fixed = body[:4] + (len(body) - 8).to_bytes(4, "little") + body[8:40] + len(pcm).to_bytes(4, "little") + pcm
    with wave.open(io.BytesIO(fixed)) as wf:
        assert wf.getframerate() == rate and wf.getnchannels() == 1 and wf.getsampwidth() == 2

    r = await client.post(
        "/api/speech/generate", json={"text": "Hello there.", "format": "pcm"}, headers=agent_headers(A)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) > 0 and len(r.content) % 2 == 0
