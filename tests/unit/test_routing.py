"""Routing: transfer destinations (agent, phone, queue, hunt list), who is offered first and next,
and the queue of waiting calls (ringing one agent at a time, moving on after OFFER_TIMEOUT_S, the
caller's place and estimated wait). Rooms are a recording double (tests/support/lobby.py); the
integration tier runs the same against livekit-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from control.bus import EventBus
from control.presence import Presence
from control.routing import CallQueue, destination, first_target, next_target
from control.store import Store
from control.wiring import follow
from functions.errors import Conflict, InvalidInput
from functions.models import AgentState, Call, CallStatus, Transfer, TransferState
from functions.settings import load_settings
from tests.support.lobby import RoomsDouble, join_lobby, leave_lobby

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path):
    settings = load_settings(
        data_dir=tmp_path,
        wrap_up_s=0,
        offer_timeout_s=0.3,
        agent_skills="agent-b:billing,agent-c:billing|returns,agent-d:returns",
    )
    store, rooms = Store(tmp_path / "r.sqlite3"), RoomsDouble()
    clock = [time.time()]
    presence = Presence(settings, store, rooms, clock=lambda: clock[0])
    yield settings, presence, store, rooms, clock
    store.close()


async def ready(presence, rooms, clock, *agents: str) -> None:
    for agent in agents:
        await join_lobby(presence, rooms, agent)
        await presence.set_ready(agent, True)
        clock[0] += 1  # each later than the one before: the first is idle longest


def test_destinations_are_parsed_or_refused():
    assert destination("agent-b") == destination("agent-b", "agent")
    assert destination("+14155550123").kind == "phone"
    assert destination("queue:Billing") == destination("billing", "queue")
    assert destination("billing", "queue").route == ("queue:billing",)
    hunt = destination("", "hunt", ["agent-b", " queue:returns "])
    assert (hunt.kind, hunt.route) == ("hunt", ("agent-b", "queue:returns"))
    assert destination("", None, ["agent-b"]).kind == "hunt"
    for bad in (
        lambda: destination("", "hunt", []),
        lambda: destination("", "hunt", ["agent-b", "agent-b"]),
        lambda: destination("", "hunt", ["caller-x"]),
        lambda: destination("", "hunt", [f"agent-{i}" for i in range(11)]),
        lambda: destination("bill ing", "queue"),
        lambda: destination("x", "fax"),
        lambda: destination("", "agent"),
    ):
        with pytest.raises(InvalidInput):
            bad()


async def test_first_target_picks_the_longest_idle_or_refuses(world):
    _s, p, store, rooms, clock = world
    with pytest.raises(InvalidInput, match="there is no queue 'sales'; the queues are: billing, returns"):
        await first_target(destination("sales", "queue"), p, "agent-a")
    with pytest.raises(Conflict, match="nobody in billing is available: the caller stays with you"):
        await first_target(destination("billing", "queue"), p, "agent-a")
    await ready(p, rooms, clock, "agent-c", "agent-b")
    assert await first_target(destination("billing", "queue"), p, "agent-a") == "agent-c"
    # A hunt list: in its order, skipping who cannot take it; an unknown agent is the request's mistake.
    assert await first_target(destination("", "hunt", ["agent-d", "agent-b"]), p, "agent-a") == "agent-b"
    with pytest.raises(InvalidInput, match="no agent 'agent-zz'"):
        await first_target(destination("", "hunt", ["agent-zz", "agent-b"]), p, "agent-a")
    with pytest.raises(Conflict, match="nobody on the hunt list"):
        await first_target(destination("", "hunt", ["agent-d", "queue:returns"]), p, "agent-c")
    with pytest.raises(InvalidInput, match="yourself"):
        await first_target(destination("agent-a"), p, "agent-a")
    assert store.list_transfers() == []


async def test_next_target_skips_everyone_offered_before(world):
    _s, p, store, rooms, clock = world
    await ready(p, rooms, clock, "agent-b", "agent-c", "agent-d")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="agent-a"))
    t = store.add_transfer(
        Transfer(
            transfer_id="t1",
            call_id="c1",
            call_room="call-c1",
            consult_room="consult-t1",
            from_agent="agent-a",
            target="agent-b",
            route=["queue:billing", "agent-d"],
        )
    )
    t = store.transition("t1", TransferState.consulting, actor="agent-a", detail={"target": "agent-b"})
    assert next_target(t, p) == "agent-c"
    t = store.retarget(
        "t1",
        expected="agent-b",
        target="agent-c",
        actor="agent-b",
        events=[
            {"event": "offer_declined", "agent": "agent-b"},
            {"event": "offered", "from": "agent-b", "to": "agent-c"},
        ],
    )
    assert t.target == "agent-c" and [e.detail.get("event") for e in t.events] == [None, "offer_declined", "offered"]
    assert next_target(t, p) == "agent-d"  # billing is exhausted; the list goes on
    # A stale move (the offer moved on already) changes nothing.
    assert store.retarget("t1", expected="agent-b", target="agent-d", actor="timer", events=[]) is None
    assert store.get_transfer("t1").target == "agent-c"


async def _call(store, n: int) -> Call:
    return store.add_call(Call(call_id=f"c{n}", room=f"call-c{n}", caller_identity=f"caller-c{n}", caller_name=f"C{n}"))


def queue(settings, presence, rooms, assign) -> CallQueue:
    """The call queue, following presence as in the app (control/wiring.py): it rings agents who become available."""
    q = CallQueue(settings, presence, rooms, assign)
    follow(EventBus(), presence, q)
    return q


async def _assign(store, presence):
    async def assign(call_id: str, agent: str) -> Call:
        return store.update_call(call_id, agent_identity=agent, status=CallStatus.active)

    return assign


async def test_a_waiting_call_rings_one_agent_then_the_next_then_waits(world):
    settings, p, store, rooms, clock = world
    q = queue(settings, p, rooms, await _assign(store, p))
    await ready(p, rooms, clock, "agent-b", "agent-c")
    w = await q.add(await _call(store, 1))
    assert w.agent == "agent-b" and p.state("agent-b") is AgentState.ringing
    assert rooms.of("call.incoming")[-1][2] == ["agent-b"]
    await asyncio.sleep(settings.offer_timeout_s + 0.2)  # B does not answer
    assert w.agent == "agent-c" and p.state("agent-b") is AgentState.available
    assert rooms.of("call.withdrawn")[-1][1:] == ({"call_id": "c1", "reason": "no answer"}, ["agent-b"])
    await asyncio.sleep(settings.offer_timeout_s + 0.2)  # nor does C: back to the queue, seen by all
    assert w.agent is None and rooms.of("call.incoming")[-1][2] is None
    assert [x.call_id for x in q.offers_for("agent-b")] == ["c1"]
    # The caller's page is told who it rings and its place.
    assert rooms.of("call.queue")[-1][1]["queue"]["place"] == 1
    # Anyone free may take it from the queue.
    call = await q.accept("c1", "agent-c")
    assert call.agent_identity == "agent-c" and q.get("c1") is None
    await q.aclose()


async def test_queued_calls_ring_agents_who_become_available_oldest_first(world):
    settings, p, store, rooms, clock = world
    q = queue(settings, p, rooms, await _assign(store, p))
    w1 = await q.add(await _call(store, 1))
    clock[0] += 1
    w2 = await q.add(await _call(store, 2))
    assert (w1.agent, w2.agent) == (None, None)
    assert q.place("c2") == {"place": 2, "estimated_wait_s": None}  # nobody takes calls: no estimate
    await join_lobby(p, rooms, "agent-b")
    await p.set_ready("agent-b", True)
    await asyncio.sleep(0.2)  # presence announces, the queue dispatches
    assert (w1.agent, w2.agent) == ("agent-b", None)
    assert q.place("c2") == {"place": 2, "estimated_wait_s": 120}  # 2 callers per agent × 60 s
    # The ringing agent closes the browser: the call moves on at once (nobody else: it waits).
    await leave_lobby(p, rooms, "agent-b")
    await asyncio.sleep(0.2)
    assert w1.agent is None and w1.missed == {"agent-b"}
    await q.aclose()


async def test_answering_rules(world):
    settings, p, store, rooms, clock = world
    q = queue(settings.model_copy(update={"offer_timeout_s": 30}), p, rooms, await _assign(store, p))
    await ready(p, rooms, clock, "agent-b", "agent-c")
    with pytest.raises(InvalidInput, match="agent-d is not available any more"):
        q.check_pick("agent-d")
    c1 = await _call(store, 1)
    await q.add(c1, pick="agent-c")
    assert q.get("c1").agent == "agent-c"  # the caller's pick rings first
    with pytest.raises(Conflict, match="ringing agent-c, not you"):
        await q.accept("c1", "agent-b")
    clock[0] = c1.created_at + 10  # C answers after 10 s
    await q.accept("c1", "agent-c")
    with pytest.raises(InvalidInput, match="no longer waiting"):
        await q.accept("c1", "agent-b")
    await p.set_ready("agent-b", False)
    await q.add(await _call(store, 2))
    assert q.get("c2").agent is None  # C is on a call, B not taking calls: it waits in the queue
    with pytest.raises(Conflict, match="on another call"):
        await q.accept("c2", "agent-c")
    assert store.get_call("c2").status is CallStatus.waiting
    assert q.place("c2")["estimated_wait_s"] == 10  # one caller answered so far, after 10 s
    c2 = store.get_call("c2")
    await p.set_ready("agent-b", True)
    await asyncio.sleep(0.2)  # presence announces, the queue dispatches: c2 rings B
    assert q.get("c2").agent == "agent-b"
    clock[0] = c2.created_at + 20  # B answers after 20 s
    await q.accept("c2", "agent-b")
    await q.add(await _call(store, 3))
    # The mean of the answered callers' waits (10 and 20 s), one caller ahead per agent taking calls.
    assert q.place("c3") == {"place": 1, "estimated_wait_s": 15}
    await q.aclose()
