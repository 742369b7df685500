"""A needed job that never arrives is dispatched again until it is there (issue 18): LiveKit drops
a dispatch no registered worker can take, so a call started before the first worker registered
must still get its media once one does.

Peer: a stand-in for RoomService (`FakeRooms` below, rooms and identities in memory); the real
`MediaControl` with its pauses shortened.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from control import media_control
from control.media_control import MediaControl
from functions.models import Call
from functions.settings import load_settings

pytestmark = pytest.mark.unit


CALL = Call(call_id="1", room="call-1", caller_identity="caller-1", caller_name="Ann")  # its job: media-1


class FakeRooms:
    def __init__(self) -> None:
        self.rooms: dict[str, set[str]] = {"call-1": {"caller-1"}}
        self.dispatched: list[tuple[str, str]] = []  # (room, agent name)

    async def dispatch(self, room: str, agent_name: str, metadata: str) -> None:
        self.dispatched.append((room, agent_name))

    async def room_exists(self, name: str) -> bool:
        return name in self.rooms

    async def identities(self, room: str) -> set[str]:
        return set(self.rooms.get(room, set()))


@pytest.fixture
def control(monkeypatch):
    monkeypatch.setattr(media_control, "REDISPATCH_GRACE_S", 0.05)
    monkeypatch.setattr(media_control, "REDISPATCH_MAX_S", 0.2)
    rooms = FakeRooms()
    return MediaControl(load_settings(), rooms), rooms  # type: ignore[arg-type]


async def test_a_job_no_worker_took_is_dispatched_until_it_joins(control):
    media, rooms = control
    dispatched: list[float] = []

    async def redispatch() -> bool:
        dispatched.append(asyncio.get_running_loop().time())
        await media.redispatch_call_job(CALL)
        if len(dispatched) == 4:  # a worker registered at last: this dispatch lands
            rooms.rooms["call-1"].add("media-1")
        return True

    media.call_job(CALL)  # the first dispatch, with the room
    await asyncio.wait_for(media.job_left("call-1", "media-1", redispatch), 5)
    assert len(dispatched) == 4 and len(rooms.dispatched) == 4
    pauses = [b - a for a, b in itertools.pairwise(dispatched)]
    assert pauses[0] < pauses[-1] <= 0.2 + 0.1  # growing, and capped
    assert media.redispatches == 4


async def test_it_stops_when_the_room_is_gone_or_the_job_is_no_longer_needed(control):
    media, rooms = control
    calls = 0

    async def redispatch() -> bool:
        nonlocal calls
        calls += 1
        await media.redispatch_call_job(CALL)
        del rooms.rooms["call-1"]  # the call ended meanwhile
        return True

    media.call_job(CALL)
    await asyncio.wait_for(media.job_left("call-1", "media-1", redispatch), 5)
    assert calls == 1

    rooms.rooms["call-1"] = {"caller-1"}

    async def not_needed() -> bool:  # the owner decided not to dispatch (e.g. the consult was answered)
        nonlocal calls
        calls += 1
        return False

    await asyncio.wait_for(media.job_left("call-1", "media-1", not_needed), 5)
    assert calls == 2
