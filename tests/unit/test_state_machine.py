"""The transfer state machine, applied through the SQLite store: every legal
transition is accepted and logged; every illegal one raises and changes nothing.

The expected table is written out here, from the README's state diagram, and never derived from
`ALLOWED`: a transition added to or dropped from the code fails `test_the_table_is_the_documented_one`
until this table (and the README) say so too."""

from __future__ import annotations

import itertools

import pytest

from control.state_machine import ALLOWED, ROLLBACK_STATES
from control.store import Store
from functions.errors import Conflict, IllegalTransition, NotFound
from functions.models import TERMINAL_STATES, Call, Transfer, TransferState

pytestmark = pytest.mark.unit
S = TransferState

# state → the states that may follow it (README, "One warm transfer").
EXPECTED: dict[str, set[str]] = {
    "idle": {"consulting", "failed", "cancelled"},
    "consulting": {
        "completing",
        "introducing",
        "cancelled",
        "declined",
        "timed_out",
        "target_left",
        "caller_left",
        "failed",
    },
    "completing": {"completed", "failed", "caller_left"},
    "introducing": {"completed", "failed", "caller_left", "target_left", "cancelled"},
    "completed": set(),
    "cancelled": set(),
    "declined": set(),
    "timed_out": set(),
    "target_left": set(),
    "caller_left": set(),
    "failed": set(),
}
# The outcomes after which the caller is back with A (A's desk and the caller's page say so).
EXPECTED_ROLLBACK = {"cancelled", "declined", "timed_out", "target_left", "failed"}
LEGAL = [(S(c), S(n)) for c, nexts in EXPECTED.items() for n in sorted(nexts)]
ILLEGAL = [(S(c), S(n)) for c in EXPECTED for n in EXPECTED if n not in EXPECTED[c]]


def _path_to(state: TransferState) -> list[TransferState]:
    """A legal path from idle to `state`, through the expected table."""
    paths: dict[str, list[TransferState]] = {"idle": []}
    frontier = ["idle"]
    while frontier:
        cur = frontier.pop(0)
        for nxt in sorted(EXPECTED[cur]):
            if nxt not in paths:
                paths[nxt] = [*paths[cur], S(nxt)]
                frontier.append(nxt)
    return paths[state.value]


def test_the_table_is_the_documented_one():
    assert {s.value for s in S} == set(EXPECTED)
    assert {c.value: {n.value for n in nexts} for c, nexts in ALLOWED.items()} == EXPECTED
    assert {s.value for s in ROLLBACK_STATES} == EXPECTED_ROLLBACK


def _store_with_transfer(tmp_path, state: TransferState) -> tuple[Store, str]:
    store = Store(tmp_path / "t.sqlite3")
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="a"))
    store.add_transfer(
        Transfer(
            transfer_id="t1", call_id="c1", call_room="call-c1", consult_room="consult-t1", from_agent="a", target="b"
        )
    )
    for step in _path_to(state):
        store.transition("t1", step, actor="test")
    return store, "t1"


def test_every_state_is_reachable_from_idle():
    for state in S:
        assert state is S.idle or _path_to(state), f"{state} unreachable"


@pytest.mark.parametrize(("current", "new"), LEGAL)
def test_legal_transition_is_applied_and_logged(tmp_path, current, new):
    store, tid = _store_with_transfer(tmp_path, current)
    before = len(store.get_transfer(tid).events)
    t = store.transition(tid, new, actor="agent-x", reason="why", detail={"k": 1})
    assert t.state is new
    ev = t.events[-1]
    assert len(t.events) == before + 1
    assert (ev.from_state, ev.to_state, ev.actor, ev.detail) == (current, new, "agent-x", {"k": 1, "reason": "why"})
    assert ev.at >= t.created_at


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_illegal_transition_raises_and_changes_nothing(tmp_path, current, new):
    store, tid = _store_with_transfer(tmp_path, current)
    before = store.get_transfer(tid)
    with pytest.raises(IllegalTransition, match=f"cannot go from '{current.value}' to '{new.value}'"):
        store.transition(tid, new, actor="x")
    after = store.get_transfer(tid)
    assert after == before


def test_terminal_states_are_the_ones_without_successors():
    assert {t.value for t in TERMINAL_STATES} == {s for s, nexts in EXPECTED.items() if not nexts}


def test_one_open_transfer_per_call_and_state_survives_reopen(tmp_path):
    store, tid = _store_with_transfer(tmp_path, S.consulting)
    with pytest.raises(Conflict, match="already has an open transfer"):
        store.add_transfer(
            Transfer(
                transfer_id="t2",
                call_id="c1",
                call_room="call-c1",
                consult_room="consult-t2",
                from_agent="a",
                target="c",
            )
        )
    store.close()
    reopened = Store(tmp_path / "t.sqlite3")  # what a restarted app sees
    t = reopened.get_transfer(tid)
    assert t.state is S.consulting and [e.to_state for e in t.events] == [S.consulting]
    assert [x.transfer_id for x in reopened.list_transfers(open_only=True)] == [tid]
    assert reopened.list_calls()[0].call_id == "c1"
    with pytest.raises(NotFound):
        reopened.get_transfer("nope")


def test_concurrent_transitions_only_one_wins(tmp_path):
    """Two threads racing accept vs. cancel: exactly one transition is recorded."""
    from concurrent.futures import ThreadPoolExecutor

    store, tid = _store_with_transfer(tmp_path, S.consulting)

    def attempt(state):
        try:
            store.transition(tid, state, actor=state.value)
            return True
        except IllegalTransition:
            return False

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, itertools.islice(itertools.cycle([S.completing, S.cancelled]), 16)))
    t = store.get_transfer(tid)
    # From consulting both are legal; after either one, the other is illegal.
    assert sum(results) == 1 and len(t.events) == 2


def test_a_database_from_before_queues_opens_and_gains_the_route_column(tmp_path):
    """A store written before queue transfers (no `route` column, no agents table) opens as is."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE transfers (
            transfer_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, call_room TEXT NOT NULL, consult_room TEXT NOT NULL,
            from_agent TEXT NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
        INSERT INTO transfers VALUES ('t0', 'c0', 'call-c0', 'consult-t0', 'a', 'agent', 'b', 'completed', '', 1, 1);
        """
    )
    db.close()
    store = Store(path)
    assert store.get_transfer("t0").route == []
    store.add_call(Call(call_id="c1", room="call-c1", caller_identity="caller-c1", agent_identity="a"))
    t = store.add_transfer(
        Transfer(
            transfer_id="t1",
            call_id="c1",
            call_room="call-c1",
            consult_room="consult-t1",
            from_agent="a",
            target="b",
            route=["queue:billing", "c"],
        )
    )
    assert t.route == ["queue:billing", "c"]
    assert store.save_agent("b", ready=True).ready and store.get_agent("b").name == ""


def test_note_appends_an_event_without_changing_the_state(tmp_path):
    store, tid = _store_with_transfer(tmp_path, S.introducing)
    t = store.note(tid, actor="system", detail={"event": "introduced"})
    assert t.state is S.introducing
    assert (t.events[-1].from_state, t.events[-1].to_state, t.events[-1].detail) == (
        S.introducing,
        S.introducing,
        {"event": "introduced"},
    )
    with pytest.raises(NotFound):
        store.note("nope", actor="x", detail={})
