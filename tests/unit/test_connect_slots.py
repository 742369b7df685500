"""A worker's connect slots (media/slots.py): no more than N jobs join at once, a slot is free
again when its holder is done, and a full set of slots delays a job, never strands it.

Peer: none; `flock` on files in a temporary directory (the same locks job processes take)."""

from __future__ import annotations

import asyncio

import pytest

from media.slots import ConnectSlots

pytestmark = pytest.mark.unit


async def test_at_most_n_hold_a_slot_at_once(tmp_path):
    slots = ConnectSlots(tmp_path, 2)
    inside, most = 0, 0

    async def job() -> None:
        nonlocal inside, most
        async with slots.slot():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(job() for _ in range(6))), 5)
    assert most == 2


async def test_a_full_set_delays_then_gives_up_waiting(tmp_path):
    slots = ConnectSlots(tmp_path, 1, max_wait_s=0.2)
    async with slots.slot() as first:
        assert first < 0.05
        async with slots.slot() as second:  # the only slot is held: waits max_wait_s, then goes on
            assert 0.2 <= second < 1.0
    async with slots.slot() as third:  # released: free at once
        assert third < 0.05


async def test_zero_slots_means_no_limit(tmp_path):
    slots = ConnectSlots(tmp_path, 0)
    async with slots.slot() as a, slots.slot() as b:
        assert a < 0.05 and b < 0.05
