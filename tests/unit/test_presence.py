"""Agent presence: availability, first-available routing, offers and lobby notices."""

from __future__ import annotations

import pytest

from functions.errors import InvalidInput, NotFound
from functions.presence import Presence

pytestmark = pytest.mark.unit


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, list[str] | None]] = []

    async def __call__(self, msg, to):
        self.sent.append((msg.type, msg.payload, to))

    def of(self, kind: str) -> list[tuple[dict, list[str] | None]]:
        return [(p, to) for t, p, to in self.sent if t == kind]


@pytest.fixture
def world():
    busy: set[str] = set()
    out = Outbox()
    return Presence(busy=lambda i: i in busy, send=out), busy, out


async def test_sign_in_is_unavailable_until_the_agent_says_so(world):
    p, _busy, out = world
    await p.sign_in("agent-a", "Alice")
    assert not p.is_available("agent-a")
    assert p.first_available() is None
    await p.set_available("agent-a", True)
    assert p.first_available() == "agent-a"
    last = out.of("presence.changed")[-1]
    assert last[1] is None  # everyone in the lobby
    assert last[0]["agents"] == [
        {"identity": "agent-a", "name": "Alice", "available": True, "since": p.get("agent-a").since, "busy": False}
    ]


async def test_first_available_skips_busy_and_prefers_longest_waiting(world):
    p, busy, _out = world
    for ident in ("agent-a", "agent-b", "agent-c"):
        await p.sign_in(ident)
        await p.set_available(ident, True)
    assert p.first_available() == "agent-a"
    busy.add("agent-a")
    assert p.first_available() == "agent-b"
    assert p.first_available(exclude=("agent-b",)) == "agent-c"
    await p.set_available("agent-b", False)
    await p.set_available("agent-b", True)  # back at the end of the queue
    assert p.first_available() == "agent-c"
    assert [a.identity for a in p.available(exclude=("agent-c",))] == ["agent-a", "agent-b"]


async def test_offers_go_to_one_agent_or_to_everyone_available(world):
    p, _busy, out = world
    await p.sign_in("agent-a")
    await p.sign_in("agent-b")
    await p.set_available("agent-a", True)
    await p.offer("c1", "Maria", "agent-a")
    assert out.of("call.incoming")[-1] == (
        {"call_id": "c1", "caller_name": "Maria", "offered_to": "agent-a"},
        ["agent-a"],
    )
    assert [o.call_id for o in p.offers_for("agent-a")] == ["c1"]
    assert p.offers_for("agent-b") == []
    with pytest.raises(InvalidInput):
        await p.offer("c2", "Bo", "agent-b")  # not available
    await p.offer("c3", "Queued", None)
    assert out.of("call.incoming")[-1][1] is None
    assert [o.call_id for o in p.offers_for("agent-a")] == ["c1", "c3"]
    assert p.offers_for("agent-b") == []  # unavailable agents do not see the queue
    await p.set_available("agent-b", True)
    assert out.of("call.incoming")[-1] == ({"call_id": "c3", "caller_name": "Queued", "offered_to": None}, ["agent-b"])
    await p.withdraw("c1", reason="answered")
    assert out.of("call.withdrawn")[-1] == ({"call_id": "c1", "reason": "answered"}, ["agent-a"])
    assert p.offer_of("c1") is None


async def test_unknown_agent_and_sign_out(world):
    p, _busy, _out = world
    with pytest.raises(NotFound):
        await p.set_available("nobody", True)
    await p.sign_in("agent-a", "Alice")
    assert p.name_of("agent-a") == "Alice"
    assert p.name_of("agent-z") == "agent-z"
    await p.sign_out("agent-a")
    assert p.agents() == []
