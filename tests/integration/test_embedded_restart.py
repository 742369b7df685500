"""The embedded livekit-server across app restarts (issue 17, part 4): its keys live under
DATA_DIR (0600), so a restarted app re-attaches to the server a crashed app left running, its calls'
rooms are still there, and the caller tickets it issued are still valid; a server from another
DATA_DIR (other keys) is never mistaken for ours.

Peers: livekit-server processes started here on free ports (not the session's).
"""

from __future__ import annotations

import asyncio
import stat

import pytest

from control.auth import Auth
from control.livekit_server import EmbeddedLiveKit
from control.rooms import Rooms
from functions.settings import load_settings

pytestmark = pytest.mark.integration


async def test_a_restarted_app_reattaches_and_keeps_tickets_valid(tmp_path):
    base = load_settings(data_dir=tmp_path, livekit_port=0)
    first = await asyncio.to_thread(EmbeddedLiveKit(base, state_dir=tmp_path / "livekit").start)
    try:
        assert stat.S_IMODE((tmp_path / "livekit" / "server.json").stat().st_mode) == 0o600
        settings = first.settings_for(base)
        ticket = Auth(settings).caller_ticket("c1", "caller-c1")
        rooms = Rooms(settings)
        await rooms.create_room("call-c1", empty_timeout=120)
        await rooms.aclose()
        # The app dies without cleaning up (kill -9): its server lives on in its own session.
        again = EmbeddedLiveKit(base, state_dir=tmp_path / "livekit")
        await asyncio.to_thread(again.start)
        assert again.pid == first.pid, "started a second server instead of re-attaching"
        settings2 = again.settings_for(base)
        Auth(settings2).check_caller("c1", "caller-c1", ticket)  # raises Forbidden if the keys changed
        rooms2 = Rooms(settings2)
        try:
            assert await rooms2.room_exists("call-c1"), "the call's room did not survive the app restart"
        finally:
            await rooms2.aclose()
    finally:
        await asyncio.to_thread(first.stop)


async def test_a_server_with_other_keys_is_not_adopted(tmp_path):
    """Another DATA_DIR's server on the port we kept: our authenticated readiness check fails there,
    so we start our own on fresh ports instead of talking to a server that rejects our keys."""
    base = load_settings(data_dir=tmp_path, livekit_port=0)
    ours = EmbeddedLiveKit(base, state_dir=tmp_path / "ours")
    stranger = await asyncio.to_thread(EmbeddedLiveKit(base, port=ours.port, state_dir=tmp_path / "other").start)
    try:
        assert not ours.ready(), "a server with other keys answered our authenticated check"
        await asyncio.to_thread(ours.start)
        try:
            assert ours.port != stranger.port and ours.ready()
        finally:
            await asyncio.to_thread(ours.stop)
    finally:
        await asyncio.to_thread(stranger.stop)
