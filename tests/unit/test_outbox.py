"""Notifications go out through a per-room outbox (control.rooms.Rooms.post): the action that
causes them does not wait for LiveKit, a room's messages keep their order, what was posted to a
room is sent before the room is deleted, and a LiveKit that does not answer cannot hang a stop.
The peer is a stand-in for the RoomService transport (`send` and `delete_room`'s call), recording
order and time; the real server's delivery is covered by the integration tier."""

from __future__ import annotations

import asyncio
import time

import pytest

from control import rooms as rooms_module
from control.rooms import Rooms
from functions.events import CallsChanged, CallsChangedPayload
from functions.settings import Settings

pytestmark = pytest.mark.unit


class RecordingRooms(Rooms):
    def __init__(self, delay_s: float = 0.05) -> None:
        super().__init__(Settings())
        self.delay_s = delay_s
        self.log: list[tuple[str, str]] = []  # (room, message n or "DELETED")

    async def send(self, room, message, identities=None) -> bool:
        await asyncio.sleep(self.delay_s)
        self.log.append((room, message.payload.cause))
        return True

    async def _call(self, what, coro):
        coro.close()  # never reaches a server
        self.log.append((what.removeprefix("delete room "), "DELETED"))

    @property
    def _room(self):
        class Service:
            def delete_room(self, req):
                async def done():
                    return None

                return done()

        return Service()


def msg(n: int) -> CallsChanged:
    return CallsChanged(payload=CallsChangedPayload(cause=f"m{n}"))


async def test_post_returns_at_once_and_keeps_each_rooms_order() -> None:
    rooms = RecordingRooms(delay_s=0.05)
    t0 = time.monotonic()
    for i in range(5):
        rooms.post("a", msg(i))
        rooms.post("b", msg(i))
    assert time.monotonic() - t0 < 0.01  # nothing waited for the 0.05 s sends
    await rooms.aclose()
    assert [m for r, m in rooms.log if r == "a"] == [f"m{i}" for i in range(5)]
    assert [m for r, m in rooms.log if r == "b"] == [f"m{i}" for i in range(5)]
    # The two rooms were sent in parallel: about 5 x 0.05 s, not 10 x.
    assert time.monotonic() - t0 < 0.45


async def test_what_was_posted_is_sent_before_the_room_is_deleted() -> None:
    rooms = RecordingRooms(delay_s=0.02)
    rooms.post("consult-1", msg(1))
    rooms.post("consult-1", msg(2))
    await rooms.delete_room("consult-1")
    assert rooms.log == [("consult-1", "m1"), ("consult-1", "m2"), ("consult-1", "DELETED")]


async def test_a_livekit_that_does_not_answer_cannot_hang_a_delete_or_a_stop(monkeypatch) -> None:
    monkeypatch.setattr(rooms_module, "FLUSH_S", 0.2)
    rooms = RecordingRooms(delay_s=60)
    rooms.post("a", msg(1))
    t0 = time.monotonic()
    await rooms.delete_room("a")
    rooms.post("b", msg(1))
    await rooms.aclose()
    assert time.monotonic() - t0 < 1.0
    assert rooms.log == [("a", "DELETED")]  # the stuck message was given up, the room still deleted


async def test_a_room_whose_outbox_overflows_drops_the_oldest(monkeypatch) -> None:
    monkeypatch.setattr(rooms_module, "OUTBOX_LIMIT", 3)
    rooms = RecordingRooms(delay_s=0.01)
    for i in range(6):
        rooms.post("a", msg(i))
    await rooms.aclose()
    # Posted faster than the room's sender could start: the newest three were kept, in order.
    assert [m for _, m in rooms.log] == ["m3", "m4", "m5"]
