"""The SQLite store when the database cannot be written (read-only, disk full), and its
idempotency keys. A real SQLite file in the test's tmp dir; no other peers.

Root ignores file modes, so "read-only" and "disk full" are SQLite's own pragmas on the store's
connection (tests/support/sqlite_faults.py): the same SQLITE_READONLY and SQLITE_FULL errors a
read-only mount or a full disk give."""

from __future__ import annotations

import sqlite3

import pytest

from control.phone_bridge import Leg, LegStore
from control.store import IDEMPOTENCY_STALE_S, IDEMPOTENCY_TTL_S, Store
from functions.errors import ServiceError, StorageUnavailable
from functions.models import Call, TargetKind, Transfer, TransferState
from tests.support.sqlite_faults import SqliteFaults

pytestmark = pytest.mark.unit


DB = "db.sqlite3"


@pytest.fixture
def faults() -> SqliteFaults:
    return SqliteFaults()


@pytest.fixture
def store(tmp_path, faults):
    s = Store(tmp_path / DB, connection=faults.connection)
    yield s
    s.close()


def call(n: int) -> Call:
    return Call(call_id=f"c{n}", room=f"call-c{n}", caller_identity=f"caller-c{n}", caller_name="Ann")


def test_read_only_database_is_storage_unavailable_and_reads_still_work(store, faults) -> None:
    store.add_call(call(1))
    faults.read_only(DB)
    with pytest.raises(StorageUnavailable) as e:
        store.add_call(call(2))
    assert "read-only" in e.value.message and e.value.retryable and e.value.status_code == 503
    assert isinstance(e.value, ServiceError) and isinstance(e.value.__cause__, sqlite3.OperationalError)
    assert [c.call_id for c in store.list_calls()] == ["c1"]
    faults.read_only(DB, on=False)  # fixed: the same write now succeeds
    store.add_call(call(2))


def test_full_disk_is_storage_unavailable_and_nothing_is_half_written(store, faults) -> None:
    store.add_call(call(1))
    faults.disk_full(DB)
    t = Transfer(
        transfer_id="t1",
        call_id="c1",
        call_room="call-c1",
        consult_room="consult-t1",
        from_agent="agent-a",
        target_kind=TargetKind.agent,
        target="agent-b" * 9,
    )
    with pytest.raises(StorageUnavailable, match="disk is full"):
        for n in range(2, 2000):  # until the capped file has no page left
            store.add_call(call(n).model_copy(update={"caller_name": "x" * 80}))
    with pytest.raises(StorageUnavailable, match="disk is full"):
        for n in range(2000):
            store.add_transfer(
                t.model_copy(update={"transfer_id": f"t{n}", "call_id": "c1", "state": TransferState.failed})
            )
    assert not faults.in_transaction(DB)  # rolled back, not left open for the next request


def test_integrity_errors_stay_bugs(store) -> None:
    store.add_call(call(1))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_call(call(1))


def test_leg_store_converts_too(tmp_path, faults) -> None:
    legs = LegStore(tmp_path / "legs.sqlite3", connection=faults.connection)
    try:
        assert legs.create(Leg(transfer_id="t1", to="+14155550123", brief="b"))
        assert not legs.create(Leg(transfer_id="t1", to="+14155550123", brief="other"))  # one leg per transfer
        faults.read_only("legs.sqlite3")
        with pytest.raises(StorageUnavailable, match="read-only"):
            legs.claim("webhook-key")
        assert legs.get("t1").brief == "b"
    finally:
        legs.close()


# --- idempotency keys ------------------------------------------------------------------------


def test_idempotency_key_claim_finish_replay(store) -> None:
    assert store.claim_idempotency_key("agent-a", "k1", "fp1", now=1000).state == "new"
    assert store.claim_idempotency_key("agent-a", "k1", "fp1", now=1001).state == "pending"
    assert store.claim_idempotency_key("agent-a", "k1", "fp2", now=1001).state == "mismatch"
    assert store.claim_idempotency_key("agent-b", "k1", "fp2", now=1001).state == "new"  # keys are per agent
    store.finish_idempotency_key("agent-a", "k1", 201, '{"ok": true}')
    done = store.claim_idempotency_key("agent-a", "k1", "fp1", now=1002)
    assert (done.state, done.status_code, done.body) == ("done", 201, '{"ok": true}')
    store.release_idempotency_key("agent-a", "k1")  # a finished key is not released
    assert store.claim_idempotency_key("agent-a", "k1", "fp1", now=1003).state == "done"


def test_a_replay_is_answered_while_the_database_is_read_only(store, faults) -> None:
    store.claim_idempotency_key("agent-a", "k1", "fp1", now=1000)
    store.finish_idempotency_key("agent-a", "k1", 200, "{}")
    faults.read_only(DB)
    assert store.claim_idempotency_key("agent-a", "k1", "fp1", now=1001).state == "done"
    with pytest.raises(StorageUnavailable):
        store.claim_idempotency_key("agent-a", "k2", "fp1", now=1001)


def test_released_stale_and_expired_keys_are_free_again(store) -> None:
    store.claim_idempotency_key("agent-a", "failed", "fp", now=1000)
    store.release_idempotency_key("agent-a", "failed")
    assert store.claim_idempotency_key("agent-a", "failed", "fp", now=1001).state == "new"

    store.claim_idempotency_key("agent-a", "crashed", "fp", now=1000)  # never finished nor released
    assert store.claim_idempotency_key("agent-a", "crashed", "fp", now=1000 + IDEMPOTENCY_STALE_S - 1).state == (
        "pending"
    )
    assert store.claim_idempotency_key("agent-a", "crashed", "fp2", now=1000 + IDEMPOTENCY_STALE_S + 1).state == "new"

    store.claim_idempotency_key("agent-a", "old", "fp", now=1000)
    store.finish_idempotency_key("agent-a", "old", 200, "{}")
    later = 1000 + IDEMPOTENCY_TTL_S + 1
    assert store.claim_idempotency_key("agent-a", "old", "other", now=later).state == "new"


def test_idempotency_keys_are_bounded_by_their_retention(store, tmp_path) -> None:
    for n in range(50):
        store.claim_idempotency_key("agent-a", f"k{n}", "fp", now=1000 + n)
    store.claim_idempotency_key("agent-a", "fresh", "fp", now=1000 + IDEMPOTENCY_TTL_S + 25)
    with sqlite3.connect(tmp_path / DB) as db:  # what the file holds, read as another process would
        left = db.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]
    assert left == 26  # k25..k49 and fresh: the 25 oldest were forgotten by the new claim
