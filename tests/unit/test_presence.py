"""Agent presence derived from facts: the lobby connection (webhooks, RoomService), the store
(calls, transfers, what the agent declared) and the offers ringing it. Rooms are a recording
double (tests/support/lobby.py); the integration tier checks the same against livekit-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from control.presence import LOBBY, Presence
from control.store import Store
from functions.errors import Conflict, InvalidInput
from functions.models import AgentState, Call, CallStatus, Transfer, TransferState
from functions.settings import load_settings
from tests.support.lobby import RoomsDouble, join_lobby, leave_lobby, webhook

pytestmark = pytest.mark.unit
A = AgentState


@pytest.fixture
def world(tmp_path):
    settings = load_settings(data_dir=tmp_path, wrap_up_s=30, agent_skills="agent-b:billing,agent-c:billing|returns")
    store, rooms = Store(tmp_path / "p.sqlite3"), RoomsDouble()
    clock = [time.time()]
    presence = Presence(settings, store, rooms, clock=lambda: clock[0])
    yield presence, store, rooms, clock
    store.close()


async def ready(presence, rooms, identity: str, name: str = "") -> None:
    await join_lobby(presence, rooms, identity, name)
    await presence.set_ready(identity, True, name=name or None)


async def test_available_only_while_connected_and_ready(world):
    p, store, rooms, _clock = world
    assert p.state("agent-a") is A.offline
    await join_lobby(p, rooms, "agent-a", "Alice")
    assert p.state("agent-a") is A.away  # connected, but has not said it takes calls
    await p.set_ready("agent-a", True)
    assert p.state("agent-a") is A.available and p.name_of("agent-a") == "Alice"
    await leave_lobby(p, rooms, "agent-a")  # the browser closed
    assert p.state("agent-a") is A.offline
    assert store.get_agent("agent-a").ready  # its choice is kept: the next connection is available again
    await p.sign_in("agent-a", "Alice")  # ... but a new sign-in in the UI starts not taking calls
    await join_lobby(p, rooms, "agent-a", "Alice")
    assert p.state("agent-a") is A.away
    await asyncio.sleep(0.1)
    announced = rooms.of("presence.changed")[-1]
    assert announced[0] == LOBBY and announced[2] is None
    assert {a["identity"]: a["state"] for a in announced[1]["agents"]}["agent-a"] == "away"


async def test_calls_transfers_and_consults_make_agents_busy(world):
    p, store, rooms, _clock = world
    for agent in ("agent-a", "agent-b", "agent-c"):
        await ready(p, rooms, agent)
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    store.update_call("c1", status=CallStatus.active)
    assert p.state("agent-a") is A.on_call
    store.add_transfer(
        Transfer(
            transfer_id="t1",
            call_id="c1",
            call_room="call-c1",
            consult_room="consult-t1",
            from_agent="agent-a",
            target="agent-b",
        )
    )
    store.transition("t1", TransferState.consulting, actor="agent-a")
    store.update_call("c1", status=CallStatus.on_hold)
    # Offered, not in the consult yet: ringing; there: consulting. Never available for another call.
    assert (p.state("agent-a"), p.state("agent-b")) == (A.consulting, A.ringing)
    await p.on_livekit_event(webhook("participant_joined", "consult-t1", "agent-b"))
    assert p.state("agent-b") is A.consulting
    assert p.available() == ["agent-c"]
    store.transition("t1", TransferState.completing, actor="agent-b")  # B joins the caller, who is still on hold
    assert (p.state("agent-a"), p.state("agent-b")) == (A.consulting, A.on_call)
    store.update_call("c1", status=CallStatus.active, agent_identity="agent-b")
    store.transition("t1", TransferState.completed, actor="system")
    assert (p.state("agent-a"), p.state("agent-b")) == (A.wrap_up, A.on_call)
    # A waiting call ringing C.
    p.set_ringing("agent-c", "c2")
    assert p.state("agent-c") is A.ringing and p.available() == []


async def test_wrap_up_after_a_call_then_available_again(world):
    p, store, rooms, clock = world
    await ready(p, rooms, "agent-a")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    store.update_call("c1", status=CallStatus.ended)
    assert p.state("agent-a") is A.wrap_up
    clock[0] += 31  # WRAP_UP_S later
    assert p.state("agent-a") is A.available
    # Idle since the end of its wrap-up, not since it connected.
    assert p.view("agent-a").idle_since == pytest.approx(store.get_call("c1").updated_at + 30)


async def test_longest_idle_first_and_queues(world):
    p, _store, rooms, clock = world
    for agent in ("agent-c", "agent-b", "agent-d"):
        await ready(p, rooms, agent)
        clock[0] += 1
    assert p.available() == ["agent-c", "agent-b", "agent-d"]
    assert p.available(queue="billing") == ["agent-c", "agent-b"]
    assert p.available(queue="returns", exclude={"agent-c"}) == []
    await p.set_ready("agent-c", False)
    await p.set_ready("agent-c", True)  # back at the end of the line
    assert p.available(queue="billing") == ["agent-b", "agent-c"]
    assert p.queues() == {"billing": ["agent-b", "agent-c"], "returns": ["agent-c"]}


async def test_check_target_refuses_with_a_reason(world):
    p, store, rooms, _clock = world
    with pytest.raises(InvalidInput, match="there is no agent 'agent-z'"):
        await p.check_target("agent-z")
    with pytest.raises(Conflict, match="agent-b is offline"):
        await p.check_target("agent-b")  # configured (AGENT_SKILLS), never connected
    await join_lobby(p, rooms, "agent-b", "Bob")
    with pytest.raises(Conflict, match="Bob is not taking calls"):
        await p.check_target("agent-b")
    await p.set_ready("agent-b", True)
    await p.check_target("agent-b")
    p.set_ringing("agent-b", "c9")
    with pytest.raises(Conflict, match=r"Bob is busy \(ringing\)"):
        await p.check_target("agent-b")
    assert store.get_agent("agent-z") is None  # refusing changed nothing


async def test_roomservice_catches_a_lost_webhook_but_not_a_stale_answer(world):
    p, _store, rooms, _clock = world
    rooms.members[LOBBY]["agent-a"] = "Alice"  # joined; its webhook never came
    await p.set_ready("agent-a", True)
    assert p.state("agent-a") is A.offline
    await p.sync()
    assert p.state("agent-a") is A.available
    rooms.members[LOBBY].pop("agent-a")  # left; webhook lost too
    await p.sync()
    assert p.state("agent-a") is A.offline
    # A check against RoomService at the moment a transfer targets someone (webhook not there yet).
    rooms.members[LOBBY]["agent-a"] = "Alice"
    assert await p.confirm_online("agent-a") and p.state("agent-a") is A.available

    # A RoomService answer from before a webhook does not undo what the webhook said.
    class Slow(RoomsDouble):
        async def list_participants(self, room):
            answer = await super().list_participants(room)
            await join_lobby(p, rooms, "agent-b")  # arrives while the question is out
            return answer

    # A second sign-in replaced the first connection: the first one's leaving comes after the new join.
    await p.on_livekit_event(webhook("participant_joined", LOBBY, "agent-a", "Alice", sid="PA_2"))
    await p.on_livekit_event(webhook("participant_left", LOBBY, "agent-a", sid="PA_1"))
    assert p.is_online("agent-a")
    await p.on_livekit_event(webhook("participant_left", LOBBY, "agent-a", sid="PA_2"))
    assert not p.is_online("agent-a")

    p.rooms = Slow()
    p.rooms.members = rooms.members
    rooms.members[LOBBY].pop("agent-b", None)
    await p.sync()
    assert p.is_online("agent-b")
