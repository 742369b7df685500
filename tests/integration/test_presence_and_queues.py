"""Presence that tells the truth, queues, and what the caller is told, against the real livekit-server
and the session's real media worker (piper speaks the announcements, the real Whisper transcribes
what the caller heard). Agents are realtime-SDK participants in the lobby, as their desks are.

Agents: A (660 Hz) on the call; B1 and B2 answer the "billing" queue (AGENT_SKILLS)."""

from __future__ import annotations

import asyncio
import time

import pytest

from functions.errors import Conflict, Forbidden, InvalidInput
from functions.media_protocol import briefing_identity, media_identity
from functions.models import AgentState, CallStatus, TransferState
from functions.stt.transcription import WhisperTranscriber
from tests.integration.conftest import B_HZ, CallWorld, available_agent, running_orchestrator
from tests.support.peer import SAMPLE_RATE, Peer

pytestmark = pytest.mark.integration
OFFER_TIMEOUT_S = 3.0
REMIND_S = 7.0
B1, B2 = "agent-b1", "agent-b2"


@pytest.fixture
async def orch(control_settings, control_hub):
    settings = control_settings.model_copy(
        update={
            "agent_skills": f"{B1}:billing,{B2}:billing|returns",
            "offer_timeout_s": OFFER_TIMEOUT_S,
            "announce_reminder_s": REMIND_S,
        }
    )
    async with running_orchestrator(settings, control_hub) as o:
        yield o


@pytest.fixture
async def lobby(orch):
    """available(identity) → its lobby peer (online, taking calls); all leave after the test."""
    peers: list[Peer] = []

    async def available(identity: str) -> Peer:
        peers.append(peer := await available_agent(orch, identity))
        return peer

    yield available
    for p in peers:
        await p.disconnect()


async def until(check, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_an_agent_whose_browser_closes_is_offline_within_5_s(orch, lobby):
    b = await lobby(B1)
    assert orch.presence.state(B1) is AgentState.available
    closed = time.monotonic()
    await b.disconnect()  # what a closed tab does: its lobby participant leaves
    await until(lambda: orch.presence.state(B1) is AgentState.offline, "offline", timeout=5)
    took = time.monotonic() - closed
    print(f"\n[presence] offline {took:.2f}s after the lobby connection closed")
    with pytest.raises(Conflict, match="offline"):
        await orch.presence.check_target(B1)
    # A new caller is not offered to an agent who is gone.
    call = await orch.start_call("Ann")
    assert orch.calls.get(call.call_id).agent is None


async def test_a_waiting_call_nobody_answers_moves_on_after_offer_timeout(orch, lobby):
    first = await lobby(B1)  # idle longest: rung first
    second = await lobby(B2)
    call = await orch.start_call("Ann")
    rang = await first.wait_message(lambda m: m["type"] == "call.incoming")
    assert rang["payload"] == {"call_id": call.call_id, "caller_name": "Ann", "offered_to": B1}
    assert orch.presence.state(B1) is AgentState.ringing
    started = time.monotonic()
    moved = await second.wait_message(lambda m: m["type"] == "call.incoming", timeout=OFFER_TIMEOUT_S + 5)
    took = time.monotonic() - started
    assert moved["payload"]["offered_to"] == B2 and OFFER_TIMEOUT_S - 0.5 <= took < OFFER_TIMEOUT_S + 3, took
    await first.wait_message(lambda m: m["type"] == "call.withdrawn" and m["payload"]["reason"] == "no answer")
    assert orch.presence.state(B1) is AgentState.available
    answered = await orch.calls.accept(call.call_id, B2)
    assert answered.agent_identity == B2 and answered.status is CallStatus.active


async def test_queue_transfer_first_declines_with_a_reason_second_accepts(orch, lobby):
    w = await CallWorld(orch, b=B1).start()  # B1 online first: idle longest
    b2_lobby = await lobby(B2)
    url = orch.settings.livekit_url
    try:
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, "billing", kind="queue")
        assert (t.state, t.target, t.route) == (TransferState.consulting, B1, ["queue:billing"])
        await w.caller.wait_hears(w.hold_id, timeout=20)
        b1 = await Peer(B1, tone_hz=B_HZ).connect(url, orch.agent_token(B1, t.consult_room).token)
        w.peers.append(b1)
        await b1.wait_hears(briefing_identity(t.transfer_id), timeout=30)  # B1 hears the brief

        moved = await orch.decline(t.transfer_id, actor=B1, reason="not my area")
        assert (moved.state, moved.target) == (TransferState.consulting, B2)
        await asyncio.wait_for(b1.disconnected.wait(), 10)  # taken out of the consult
        await w.b_lobby.wait_message(lambda m: m["type"] == "transfer.offer_moved")
        offer = await b2_lobby.wait_message(lambda m: m["type"] == "transfer.consulting")
        assert offer["payload"]["summary"]["caller_name"] == "Maria Lopez"
        with pytest.raises(Forbidden):
            orch.agent_token(B1, t.consult_room)  # the consult is private to A and the agent offered now
        # B2 gets a consult job of its own: only the agent offered may hear the brief.
        b2 = await Peer(B2, tone_hz=B_HZ).connect(url, orch.agent_token(B2, t.consult_room).token)
        w.peers.append(b2)
        await b2.wait_hears(briefing_identity(t.transfer_id), timeout=30)
        await w.caller.wait_hears_only({w.hold_id})  # the caller heard hold audio throughout

        await orch.accept(t.transfer_id, actor=B2)
        b2_call = await Peer(B2, tone_hz=B_HZ).connect(url, orch.agent_token(B2, w.call.room).token)
        w.peers.append(b2_call)
        done = await w.wait_state(TransferState.completed)
        await w.caller.wait_hears(B2)
        await w.caller.wait_hears_only({B2})
        log = [(e.from_state, e.to_state, e.actor, e.detail) for e in done.events]
        S = TransferState
        assert log == [
            (S.idle, S.consulting, w.a_id, {"target": B1, "route": ["queue:billing"]}),
            (S.consulting, S.consulting, B1, {"event": "offer_declined", "agent": B1, "reason": "not my area"}),
            (S.consulting, S.consulting, B1, {"event": "offered", "from": B1, "to": B2}),
            (S.consulting, S.completing, B2, {}),
            (S.completing, S.completed, "system", {}),
        ]
        assert orch.store.get_call(w.call.call_id).agent_identity == B2
    finally:
        await w.close()


async def test_no_answer_moves_a_queue_transfer_on_and_nobody_left_returns_the_caller(orch, lobby):
    w = await CallWorld(orch, b=B1).start()
    b2_lobby = await lobby(B2)
    try:
        started = time.monotonic()
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, "queue:billing")
        assert t.target == B1
        assert orch.presence.state(B1) is AgentState.ringing  # offered, not in the consult
        # B1 never joins: after OFFER_TIMEOUT_S the offer moves to B2.
        offer = await b2_lobby.wait_message(lambda m: m["type"] == "transfer.consulting", timeout=OFFER_TIMEOUT_S + 10)
        took = time.monotonic() - started
        assert offer["payload"]["transfer"]["target"] == B2
        assert OFFER_TIMEOUT_S - 0.5 <= took < OFFER_TIMEOUT_S + 3, took
        print(f"\n[queue] offer moved on {took:.2f}s after initiate (OFFER_TIMEOUT_S={OFFER_TIMEOUT_S})")
        # Nor does B2: nobody is left in billing, the transfer ends and the caller is back with A.
        done = await w.wait_state(TransferState.timed_out, timeout=OFFER_TIMEOUT_S + 10)
        events = [(e.actor, e.detail.get("event")) for e in done.events]
        assert events == [(w.a_id, None), ("timer", "offer_timed_out"), ("timer", "offered"), ("timer", None)]
        await w.caller.wait_hears(w.a_id, timeout=10)
        assert orch.store.get_call(w.call.call_id).status is CallStatus.active
        assert orch.presence.state(B1) is orch.presence.state(B2) is AgentState.available
    finally:
        await w.close()


async def test_unknown_offline_or_empty_targets_are_refused_and_nothing_changes(orch, lobby):
    w = await CallWorld(orch, b=B1).start()
    try:
        await orch.presence.set_ready(B1, False)  # online, not taking calls: billing has nobody
        rooms_before = {r.name: r.metadata for r in await orch.rooms.list_rooms()}
        store_before = (orch.store.list_calls(include_ended=True), orch.store.list_transfers())
        cases = [
            (InvalidInput, "there is no agent 'agent-nobody'", dict(target="agent-nobody")),
            (Conflict, f"{B2} is offline", dict(target=B2)),  # known (AGENT_SKILLS), never connected
            (Conflict, "not taking calls", dict(target=B1)),
            (Conflict, "nobody in billing is available", dict(target="billing", kind="queue")),
            (InvalidInput, "there is no queue 'sales'", dict(target="queue:sales")),
            (Conflict, "nobody on the hunt list", dict(kind="hunt", targets=[B1, "queue:returns"])),
        ]
        for error, words, kwargs in cases:
            with pytest.raises(error, match=words):
                await orch.initiate(w.call.call_id, w.a_id, **kwargs)
        assert (orch.store.list_calls(include_ended=True), orch.store.list_transfers()) == store_before
        assert {r.name: r.metadata for r in await orch.rooms.list_rooms()} == rooms_before  # no room, no hold
        await w.caller.wait_hears_only({w.a_id})  # the caller is still talking to A
    finally:
        await w.close()


async def test_b_never_receives_a_new_call_while_consulting(orch, lobby):
    w = await CallWorld(orch, b=B1).start()
    other = await lobby(B2)
    try:
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, B1)
        await w.join_consult()
        await until(lambda: orch.presence.state(B1) is AgentState.consulting, "B1 consulting")
        with pytest.raises(InvalidInput, match="not available"):
            await orch.start_call("Bo", pick=B1)  # a caller cannot pick B1 either
        call = await orch.start_call("Second caller")
        rang = await other.wait_message(lambda m: m["type"] == "call.incoming")
        assert rang["payload"]["offered_to"] == B2
        await orch.presence.set_ready(B2, False)  # B2 goes away: the call moves on, but never to B1
        await other.wait_message(lambda m: m["type"] == "call.withdrawn")
        await asyncio.sleep(0.5)
        assert orch.calls.get(call.call_id).agent is None  # waiting in the queue
        assert orch.calls.offers_for(B1) == []
        incoming_b1 = [m for m in w.b_lobby.messages if m["type"] == "call.incoming"]
        assert all(m["payload"]["offered_to"] != B1 for m in incoming_b1)
        await orch.accept(t.transfer_id, actor=B1)
        await w.b_joins_call()
        await w.wait_state(TransferState.completed)
        await asyncio.sleep(0.5)
        assert orch.presence.state(B1) is AgentState.on_call and orch.calls.get(call.call_id).agent is None
    finally:
        await w.close()


def _introduced(orch, transfer_id: str) -> bool:
    return any(e.detail.get("event") == "introduced" for e in orch.get_transfer(transfer_id).events)


def _transcribe(settings, pcm: bytes) -> str:
    return WhisperTranscriber(settings).load().transcribe(pcm, SAMPLE_RATE).text.lower()


async def test_the_caller_hears_the_announcement_naming_the_queue_and_b_does_not(orch, lobby):
    """The call job's speech, transcribed with the real Whisper from what the caller's peer decoded."""
    w = await CallWorld(orch, b=B1, record_hold=True).start()
    url = orch.settings.livekit_url
    try:
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, "billing", kind="queue")
        held = time.monotonic()
        b1 = await Peer(B1, tone_hz=B_HZ).connect(url, orch.agent_token(B1, t.consult_room).token)
        w.peers.append(b1)
        await w.caller.wait_hears(w.hold_id, timeout=20)
        await asyncio.sleep(REMIND_S + 4)  # the announcement, music, and the first reminder
        heard = await asyncio.to_thread(_transcribe, orch.settings, w.caller.recorded(w.hold_id, held))
        print(f"\n[announce] the caller heard: {heard!r}")
        assert "billing" in heard  # "Please hold while I bring in a colleague from billing."
        assert "connecting" in heard  # "Still connecting you, thanks for waiting." (after REMIND_S)
        # B was never where the announcement plays: nothing of the call job reached B anywhere.
        assert media_identity(w.call.call_id) not in b1.heard and media_identity(w.call.call_id) not in w.b_lobby.heard
        assert w.a.first_energy_after(w.hold_id, held) is None  # nor A, who cannot hear the caller's room

        await orch.cancel(t.transfer_id, actor=w.a_id)
        back = time.monotonic()
        await w.caller.wait_hears(w.a_id, timeout=10)
        await asyncio.sleep(4)
        heard = await asyncio.to_thread(_transcribe, orch.settings, w.caller.recorded(w.hold_id, back))
        print(f"[announce] after the roll-back: {heard!r}")
        assert "back with" in heard
    finally:
        await w.close()


async def test_introduce_three_way_then_a_leaves(orch, lobby):
    w = await CallWorld(orch, b=B1).start()
    url = orch.settings.livekit_url
    try:
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, B1)
        await w.join_consult()
        await w.b_consult.wait_hears(briefing_identity(t.transfer_id), timeout=30)
        with pytest.raises(Forbidden):
            await orch.introduce(t.transfer_id, actor=B1)  # A's choice
        t = await orch.introduce(t.transfer_id, actor=w.a_id)
        assert t.state is TransferState.introducing
        with pytest.raises(Conflict, match="has not joined the caller yet"):
            await orch.leave(t.transfer_id, actor=w.a_id)
        await w.b_joins_call()
        await until(lambda: _introduced(orch, t.transfer_id), "B with the caller")
        # All three talk: hold is off, A hears and talks again.
        caller_id = w.call.caller_identity
        await w.caller.wait_hears_only({w.a_id, B1}, timeout=10)
        await w.a.wait_hears(caller_id, timeout=10)
        await w.a.wait_hears(B1)
        await w.b_call.wait_hears(caller_id)
        await w.b_call.wait_hears(w.a_id)
        await w.wait_room_gone(t.consult_room)
        assert orch.store.get_call(w.call.call_id).status is CallStatus.active

        # The webhook's join check lets exactly these in: a stranger with a valid token is removed.
        from functions.models import Role, TokenRequest
        from functions.tokens import mint_token

        stray = mint_token(TokenRequest(identity="agent-z", role=Role.agent, room=w.call.room), orch.settings)
        z = await Peer("agent-z").connect(url, stray.token)
        w.peers.append(z)
        await asyncio.wait_for(z.disconnected.wait(), 10)
        assert await orch.rooms.identities(w.call.room) == {caller_id, w.a_id, B1, w.hold_id}

        done = await orch.leave(t.transfer_id, actor=w.a_id)
        assert done.state is TransferState.completed
        await asyncio.wait_for(w.a.disconnected.wait(), 10)
        await w.caller.wait_hears_only({B1}, timeout=10)
        assert orch.store.get_call(w.call.call_id).agent_identity == B1
        assert [e.to_state for e in done.events] == [
            TransferState.consulting,
            TransferState.introducing,
            TransferState.introducing,  # B reached the caller ("introduced")
            TransferState.completed,
        ]
        # A, with a token from before, is no longer allowed in.
        late = mint_token(TokenRequest(identity=w.a_id, role=Role.agent, room=w.call.room), orch.settings)
        again = await Peer(w.a_id).connect(url, late.token)
        w.peers.append(again)
        await asyncio.wait_for(again.disconnected.wait(), 10)
    finally:
        await w.close()


async def test_an_introduction_ends_by_itself_after_its_limit(orch, lobby):
    orch.settings = orch.settings.model_copy(update={"intro_limit_s": 2.0})
    w = await CallWorld(orch, b=B1).start()
    try:
        t = w.transfer = await orch.initiate(w.call.call_id, w.a_id, B1)
        await orch.introduce(t.transfer_id, actor=w.a_id)
        await w.b_joins_call()
        done = await w.wait_state(TransferState.completed, timeout=20)
        assert (done.events[-1].actor, done.reason) == ("timer", "introduction time limit")
        await asyncio.wait_for(w.a.disconnected.wait(), 10)  # the server took A out
        await w.caller.wait_hears_only({B1}, timeout=10)
    finally:
        await w.close()
