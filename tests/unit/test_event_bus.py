"""The control plane's event bus (control/bus.py): typed subscriptions, a failing handler isolated,
and the orchestrator's parts following the bus the app context gives it until it closes. No peer:
nothing is sent (the orchestrator is built, never started; its LiveKit URL is never dialled)."""

import logging

import pytest

from control.bus import EventBus
from control.presence import Presence
from control.rooms import Rooms
from control.routing import CallQueue
from control.store import Store
from control.transfer import TransferOrchestrator
from functions.events import (
    CallsChanged,
    CallsChangedPayload,
    CallStatusChanged,
    CallStatusPayload,
    TransferChanged,
    TransferPayload,
)
from functions.models import CallStatus, TransferState
from functions.services import build_services
from functions.settings import Settings
from tests.unit.test_events import TRANSFER

pytestmark = pytest.mark.unit


def call_status(status: CallStatus = CallStatus.ended) -> CallStatusChanged:
    return CallStatusChanged(payload=CallStatusPayload(call_id="c1", status=status, agent="agent-a"))


def transfer_changed(state: TransferState = TransferState.declined) -> TransferChanged:
    return TransferChanged.of(state, TransferPayload(transfer=TRANSFER, event=None))


def test_a_handler_gets_the_types_it_named_and_an_untyped_one_gets_all():
    bus = EventBus()
    calls, everything = [], []
    bus.subscribe(calls.append, CallStatusChanged)
    bus.subscribe(everything.append)
    status, transfer, board = call_status(), transfer_changed(), CallsChanged(payload=CallsChangedPayload(cause="x"))
    for msg in (status, transfer, board):
        bus.publish(msg)
    assert calls == [status]
    assert everything == [status, transfer, board]


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog):
    bus = EventBus()
    seen = []

    def broken(_msg):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="control.bus"):
        bus.publish(call_status())
    assert len(seen) == 1
    assert "call.status" in caplog.text and "boom" in caplog.text


def test_unsubscribing_ends_the_deliveries_and_may_be_repeated():
    bus = EventBus()
    seen = []
    unsubscribe = bus.subscribe(seen.append)
    bus.publish(call_status())
    unsubscribe()
    unsubscribe()
    bus.publish(call_status())
    assert len(seen) == 1


async def test_the_orchestrators_parts_follow_the_bus_it_is_given_until_it_closes(tmp_path, monkeypatch):
    heard: dict[str, list[str]] = {"presence": [], "queue": [], "ui": []}
    order: list[str] = []

    def follower(name: str):
        return lambda *args: (heard[name].append(args[-1].type), order.append(name))

    monkeypatch.setattr(Presence, "on_notification", follower("presence"))
    monkeypatch.setattr(CallQueue, "on_notification", follower("queue"))
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        livekit_url="ws://127.0.0.1:9",
        livekit_api_key="key",
        livekit_api_secret="s" * 32,
    )
    bus = EventBus()
    store = Store(settings.database_path)
    orch = TransferOrchestrator(build_services(settings), store, Rooms(settings), bus=bus, followers=[follower("ui")])
    try:
        assert orch.bus is bus
        bus.publish(transfer_changed())
        bus.publish(call_status())
        # Presence hears every message (it reads transfers and call statuses); the queue only call statuses;
        # the app's followers (the UI) everything, after the control plane's parts (control/wiring.py).
        want = {"presence": ["transfer.declined", "call.status"], "queue": ["call.status"], "ui": heard["ui"]}
        assert heard == want and heard["ui"] == ["transfer.declined", "call.status"]
        assert order == ["presence", "ui", "presence", "queue", "ui"]
    finally:
        await orch.aclose()
        store.close()
    bus.publish(call_status())  # the bus is the context's: a closed orchestrator's parts no longer follow it
    assert len(order) == 5
