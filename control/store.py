"""SQLite persistence for calls, transfers, the transfer event log, transcripts, agents (their
display name and whether they take calls) and the API's idempotency keys.

One connection guarded by a lock: writes are tiny and the app is one process, so
this is simpler and faster than a pool. WAL mode keeps readers off the writer.
State transitions are compare-and-set inside one transaction with their event.

SQLite's own failures (a read-only file, a full disk, a locked or broken database) are
converted here, at the boundary, into `StorageUnavailable` (503, retryable) with a sentence
saying which: callers see one error tree, and nothing half-written stays (every multi-row
change is one transaction).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from control.state_machine import check_transition
from functions.errors import Conflict, InvalidInput, NotFound, StorageUnavailable
from functions.models import (
    TERMINAL_STATES,
    BriefingExchange,
    Call,
    CallStatus,
    TranscriptSegment,
    Transfer,
    TransferEvent,
    TransferState,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, room TEXT NOT NULL, caller_identity TEXT NOT NULL, caller_name TEXT NOT NULL,
    agent_identity TEXT, status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY, call_id TEXT NOT NULL REFERENCES calls(call_id), call_room TEXT NOT NULL,
    consult_room TEXT NOT NULL, from_agent TEXT NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    route TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS transfers_by_call ON transfers(call_id);
CREATE TABLE IF NOT EXISTS transfer_events (
    transfer_id TEXT NOT NULL REFERENCES transfers(transfer_id), seq INTEGER NOT NULL, at REAL NOT NULL,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (transfer_id, seq)
);
CREATE TABLE IF NOT EXISTS transcript_segments (
    call_id TEXT NOT NULL, transfer_id TEXT, seq INTEGER NOT NULL, speaker TEXT NOT NULL, text TEXT NOT NULL,
    start REAL NOT NULL, end_ REAL NOT NULL, words TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS briefing_qa (
    transfer_id TEXT NOT NULL REFERENCES transfers(transfer_id), seq INTEGER NOT NULL, exchange TEXT NOT NULL,
    PRIMARY KEY (transfer_id, seq)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    agent TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status_code INTEGER, body TEXT,
    created_at REAL NOT NULL, PRIMARY KEY (agent, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency_keys(created_at);
CREATE TABLE IF NOT EXISTS agents (
    identity TEXT PRIMARY KEY, name TEXT NOT NULL, ready INTEGER NOT NULL DEFAULT 0, changed_at REAL NOT NULL
);
"""
# Columns added after a database may have been created: (table, column, definition).
MIGRATIONS = [
    ("transfers", "route", "TEXT NOT NULL DEFAULT '[]'"),
    ("transcript_segments", "cut", "INTEGER NOT NULL DEFAULT 0"),
    ("transcript_segments", "fallback", "INTEGER NOT NULL DEFAULT 0"),
]

IDEMPOTENCY_TTL_S = 24 * 3600  # a key is remembered this long, then forgotten (and may be reused)
# A key claimed but never finished (the process died mid-request) is free again after this.
IDEMPOTENCY_STALE_S = 300.0


def storage_error(e: sqlite3.Error) -> StorageUnavailable:
    """SQLite's error as this project's: which failure, in a sentence an operator can act on."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        what = "the database is read-only"
    elif name == "SQLITE_FULL" or "full" in text:
        what = "the database disk is full"
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        what = "the database is locked by another process"
    elif "closed" in text:
        what = "the database is closed (the server is stopping)"
    else:
        what = f"the database failed ({name or type(e).__name__}: {text})"
    return StorageUnavailable(f"{what}: nothing was saved; try again in a moment")


@contextmanager
def sqlite_errors() -> Iterator[None]:
    """Convert SQLite's operational failures into StorageUnavailable. Integrity and programming
    errors (a bug here, not the disk) stay what they are, except "closed" at shutdown."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except sqlite3.ProgrammingError as e:
        if "closed" not in str(e):
            raise
        raise storage_error(e) from e
    except sqlite3.Error as e:
        raise storage_error(e) from e


@dataclass(frozen=True)
class AgentRecord:
    """What an agent declared: its display name, and whether it takes calls (`ready`) since when."""

    identity: str
    name: str
    ready: bool
    changed_at: float


@dataclass(frozen=True)
class IdempotencyClaim:
    """What `Store.claim_idempotency_key` found: `new` (the caller runs the request and then
    finishes or releases the key), `pending` (the first request with this key still runs),
    `done` (its response: replay it), `mismatch` (the key was used for a different request)."""

    state: Literal["new", "pending", "done", "mismatch"]
    status_code: int | None = None
    body: str | None = None


_OPEN = tuple(s.value for s in TransferState if s not in TERMINAL_STATES)


class SqliteFile:
    """One SQLite file (or `:memory:`) behind one lock, autocommit outside explicit transactions:
    what the store and the phone legs' store (control.phone_bridge.LegStore) share.

    `connection`: the class of the connection (sqlite3's `factory`): `sqlite3.Connection`, or a
    subclass that a test uses to make the file read-only or full (tests/support/sqlite_faults.py)."""

    def __init__(self, path: Path | str, *, connection: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        with sqlite_errors():
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, factory=connection)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection's lock, with SQLite's failures converted (see `sqlite_errors`)."""
        with self._lock, sqlite_errors():
            yield

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (inside `_locked`): BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any
        exception. A block that rolled back itself (nothing to write after all) is not committed."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back itself (e.g. disk full)
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Store(SqliteFile):
    def __init__(self, path: Path | str, *, connection: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        super().__init__(path, connection=connection)
        self._db.row_factory = sqlite3.Row
        with self._locked():
            self._db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode, NORMAL syncs at checkpoints, not at every commit: a commit survives the app
            # being killed (it is in the WAL file), only an OS crash can lose the last few. FULL put an
            # fsync on the event loop per write; on a loaded machine those took up to 0.9 s each
            # (measured) and stalled every request and webhook of the control plane behind them.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            for table, column, definition in MIGRATIONS:
                if column not in {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    # --- calls -------------------------------------------------------------------------
    def add_call(self, call: Call) -> Call:
        with self._locked():
            self._db.execute(
                "INSERT INTO calls VALUES (?,?,?,?,?,?,?,?)",
                (
                    call.call_id,
                    call.room,
                    call.caller_identity,
                    call.caller_name,
                    call.agent_identity,
                    call.status.value,
                    call.created_at,
                    call.updated_at,
                ),
            )
        return call

    def get_call(self, call_id: str) -> Call:
        with self._locked():
            row = self._db.execute("SELECT * FROM calls WHERE call_id=?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"no call '{call_id}'")
        return Call(**dict(row))

    def call_by_room(self, room: str) -> Call | None:
        with self._locked():
            row = self._db.execute("SELECT * FROM calls WHERE room=?", (room,)).fetchone()
        return Call(**dict(row)) if row else None

    def list_calls(self, *, include_ended: bool = False) -> list[Call]:
        sql = "SELECT * FROM calls" + ("" if include_ended else " WHERE status != 'ended'") + " ORDER BY created_at"
        with self._locked():
            return [Call(**dict(r)) for r in self._db.execute(sql)]

    def update_call(self, call_id: str, **fields: object) -> Call:
        with self._locked():
            self._update_call(call_id, fields)
        return self.get_call(call_id)

    def _update_call(self, call_id: str, fields: dict[str, object]) -> None:
        allowed = {"agent_identity", "status", "caller_name"}
        if not set(fields) <= allowed:
            raise InvalidInput(f"cannot update call fields {sorted(set(fields) - allowed)}")
        values = {k: (v.value if isinstance(v, CallStatus) else v) for k, v in fields.items()}
        values["updated_at"] = time.time()
        cols = ", ".join(f"{k}=?" for k in values)
        cur = self._db.execute(f"UPDATE calls SET {cols} WHERE call_id=?", (*values.values(), call_id))
        if cur.rowcount == 0:
            raise NotFound(f"no call '{call_id}'")

    # --- transfers ------------------------------------------------------------------------
    def add_transfer(self, t: Transfer) -> Transfer:
        """Insert a new transfer; refuses a second open transfer on the same call."""
        with self._locked():
            with self._write():
                busy = self._db.execute(
                    f"SELECT transfer_id FROM transfers WHERE call_id=? AND state IN ({','.join('?' * len(_OPEN))})",
                    (t.call_id, *_OPEN),
                ).fetchone()
                if busy:
                    raise Conflict(f"call '{t.call_id}' already has an open transfer '{busy[0]}'")
                self._db.execute(
                    "INSERT INTO transfers (transfer_id, call_id, call_room, consult_room, from_agent, target_kind, "
                    "target, state, reason, created_at, updated_at, route) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        t.transfer_id,
                        t.call_id,
                        t.call_room,
                        t.consult_room,
                        t.from_agent,
                        t.target_kind.value,
                        t.target,
                        t.state.value,
                        t.reason,
                        t.created_at,
                        t.updated_at,
                        json.dumps(t.route),
                    ),
                )
        return self.get_transfer(t.transfer_id)

    def get_transfer(self, transfer_id: str) -> Transfer:
        with self._locked():
            row = self._db.execute("SELECT * FROM transfers WHERE transfer_id=?", (transfer_id,)).fetchone()
            if row is None:
                raise NotFound(f"no transfer '{transfer_id}'")
            events = self._db.execute(
                "SELECT * FROM transfer_events WHERE transfer_id=? ORDER BY seq", (transfer_id,)
            ).fetchall()
        return Transfer(
            **{**dict(row), "route": json.loads(row["route"] or "[]")},
            events=[TransferEvent(**{**dict(e), "detail": json.loads(e["detail"])}) for e in events],
        )

    def list_transfers(self, *, call_id: str | None = None, open_only: bool = False) -> list[Transfer]:
        sql, args = "SELECT transfer_id FROM transfers WHERE 1=1", []
        if call_id:
            sql += " AND call_id=?"
            args.append(call_id)
        if open_only:
            sql += f" AND state IN ({','.join('?' * len(_OPEN))})"
            args.extend(_OPEN)
        with self._locked():
            ids = [r[0] for r in self._db.execute(sql + " ORDER BY created_at", args)]
        return [self.get_transfer(i) for i in ids]

    def transition(
        self,
        transfer_id: str,
        new: TransferState,
        *,
        actor: str,
        reason: str = "",
        detail: dict | None = None,
        call: dict[str, object] | None = None,
    ) -> Transfer:
        """Apply one legal transition and append its event, atomically; `call` = fields of the transfer's
        call to update in the same transaction (the call's record never disagrees with its transfer, even
        when the disk fills between the two). Illegal: raises, changes nothing."""
        with self._locked():
            with self._write():
                row = self._db.execute(
                    "SELECT state, call_id FROM transfers WHERE transfer_id=?", (transfer_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no transfer '{transfer_id}'")
                current = TransferState(row[0])
                check_transition(current, new)
                now = time.time()
                seq = self._db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM transfer_events WHERE transfer_id=?", (transfer_id,)
                ).fetchone()[0]
                self._db.execute(
                    "UPDATE transfers SET state=?, reason=?, updated_at=? WHERE transfer_id=?",
                    (new.value, reason, now, transfer_id),
                )
                self._db.execute(
                    "INSERT INTO transfer_events VALUES (?,?,?,?,?,?,?)",
                    (
                        transfer_id,
                        seq,
                        now,
                        current.value,
                        new.value,
                        actor,
                        json.dumps({**(detail or {}), **({"reason": reason} if reason else {})}),
                    ),
                )
                if call:
                    self._update_call(row[1], call)
        return self.get_transfer(transfer_id)

    def retarget(
        self, transfer_id: str, *, expected: str, target: str, actor: str, events: list[dict]
    ) -> Transfer | None:
        """Offer a consulting transfer to `target` instead of `expected` (a queue or hunt list moving on),
        with `events` (their `detail`s) appended, atomically. None, changing nothing, when the transfer is
        no longer consulting or no longer offered to `expected` (a race another action won)."""
        with self._locked():
            with self._write():
                row = self._db.execute(
                    "SELECT state, target FROM transfers WHERE transfer_id=?", (transfer_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no transfer '{transfer_id}'")
                if row["state"] != TransferState.consulting.value or row["target"] != expected:
                    self._db.execute("ROLLBACK")
                    return None
                now = time.time()
                self._db.execute(
                    "UPDATE transfers SET target=?, updated_at=? WHERE transfer_id=?", (target, now, transfer_id)
                )
                self._append_events(transfer_id, TransferState.consulting, actor, events, now)
        return self.get_transfer(transfer_id)

    def note(self, transfer_id: str, *, actor: str, detail: dict) -> Transfer:
        """Append an event that changes no state (e.g. the introduction began: B is with the caller)."""
        with self._locked():
            with self._write():
                row = self._db.execute("SELECT state FROM transfers WHERE transfer_id=?", (transfer_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no transfer '{transfer_id}'")
                self._append_events(transfer_id, TransferState(row[0]), actor, [detail], time.time())
        return self.get_transfer(transfer_id)

    def _append_events(self, transfer_id: str, state: TransferState, actor: str, details: list[dict], now: float):
        seq = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM transfer_events WHERE transfer_id=?", (transfer_id,)
        ).fetchone()[0]
        for i, detail in enumerate(details, start=1):
            self._db.execute(
                "INSERT INTO transfer_events VALUES (?,?,?,?,?,?,?)",
                (transfer_id, seq + i, now, state.value, state.value, actor, json.dumps(detail)),
            )

    # --- agents --------------------------------------------------------------------------------
    def get_agent(self, identity: str) -> AgentRecord | None:
        with self._locked():
            row = self._db.execute("SELECT * FROM agents WHERE identity=?", (identity,)).fetchone()
        return AgentRecord(row["identity"], row["name"], bool(row["ready"]), row["changed_at"]) if row else None

    def list_agents(self) -> list[AgentRecord]:
        with self._locked():
            rows = self._db.execute("SELECT * FROM agents ORDER BY identity").fetchall()
        return [AgentRecord(r["identity"], r["name"], bool(r["ready"]), r["changed_at"]) for r in rows]

    def save_agent(
        self, identity: str, *, name: str | None = None, ready: bool | None = None, at: float | None = None
    ) -> AgentRecord:
        """Remember an agent (its name, whether it takes calls); `changed_at` (`at`, default now) moves
        only when `ready` does."""
        with self._locked():
            with self._write():
                row = self._db.execute("SELECT * FROM agents WHERE identity=?", (identity,)).fetchone()
                now = time.time() if at is None else at
                if row is None:
                    self._db.execute(
                        "INSERT INTO agents VALUES (?,?,?,?)", (identity, name or "", int(bool(ready)), now)
                    )
                else:
                    changed = ready is not None and bool(row["ready"]) != ready
                    self._db.execute(
                        "UPDATE agents SET name=?, ready=?, changed_at=? WHERE identity=?",
                        (
                            name or row["name"],
                            int(ready) if ready is not None else row["ready"],
                            now if changed else row["changed_at"],
                            identity,
                        ),
                    )
        record = self.get_agent(identity)
        assert record is not None
        return record

    def work_ended(self) -> dict[str, float]:
        """Per agent, when its latest piece of work ended: a call it was on ended, or it handed its
        caller over (a completed transfer). Wrap-up is counted from here."""
        with self._locked():
            rows = self._db.execute(
                "SELECT agent_identity AS agent, MAX(updated_at) AS at FROM calls "
                "WHERE status='ended' AND agent_identity IS NOT NULL GROUP BY agent_identity "
                "UNION ALL SELECT from_agent, MAX(updated_at) FROM transfers WHERE state='completed' "
                "GROUP BY from_agent"
            ).fetchall()
        out: dict[str, float] = {}
        for r in rows:
            out[r["agent"]] = max(out.get(r["agent"], 0.0), r["at"])
        return out

    # --- transcripts --------------------------------------------------------------------------
    def add_segment(self, call_id: str, seg: TranscriptSegment, transfer_id: str | None = None) -> int:
        with self._locked():
            seq = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM transcript_segments WHERE call_id=?", (call_id,)
            ).fetchone()[0]
            self._db.execute(
                "INSERT INTO transcript_segments (call_id, transfer_id, seq, speaker, text, start, end_, words, "
                "created_at, cut, fallback) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    call_id,
                    transfer_id,
                    seq,
                    seg.speaker,
                    seg.text,
                    seg.start,
                    seg.end,
                    json.dumps([w.model_dump() for w in seg.words]),
                    time.time(),
                    int(seg.cut),
                    int(seg.fallback),
                ),
            )
        return seq

    def segments(
        self, call_id: str, *, transfer_id: str | None = None, consult: bool = False
    ) -> list[TranscriptSegment]:
        """The call's transcript (consult segments excluded unless `consult`)."""
        sql = "SELECT * FROM transcript_segments WHERE call_id=?"
        args: list = [call_id]
        if consult:
            sql += " AND transfer_id IS NOT NULL" + (" AND transfer_id=?" if transfer_id else "")
            args += [transfer_id] if transfer_id else []
        else:
            sql += " AND transfer_id IS NULL"
        with self._locked():
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            TranscriptSegment(
                speaker=r["speaker"],
                text=r["text"],
                start=r["start"],
                end=r["end_"],
                words=json.loads(r["words"]),
                cut=bool(r["cut"]),
                fallback=bool(r["fallback"]),
            )
            for r in rows
        ]

    # --- B's questions to the briefing ---------------------------------------------------------
    def add_qa(self, exchange: BriefingExchange) -> int:
        with self._locked():
            seq = self._db.execute(
                "INSERT INTO briefing_qa SELECT ?, COALESCE(MAX(seq), 0) + 1, ? FROM briefing_qa WHERE transfer_id=? "
                "RETURNING seq",
                (exchange.transfer_id, exchange.model_dump_json(), exchange.transfer_id),
            ).fetchone()[0]
        return seq

    def qa(self, transfer_id: str) -> list[BriefingExchange]:
        """What B asked the briefing during this transfer's consult, in order."""
        with self._locked():
            rows = self._db.execute(
                "SELECT exchange FROM briefing_qa WHERE transfer_id=? ORDER BY seq", (transfer_id,)
            ).fetchall()
        return [BriefingExchange.model_validate_json(r[0]) for r in rows]

    # --- idempotency keys (the API's Idempotency-Key header) -------------------------------------
    def claim_idempotency_key(
        self, agent: str, key: str, fingerprint: str, *, now: float | None = None
    ) -> IdempotencyClaim:
        """Claim `key` for `agent`'s request `fingerprint`, or say what holds it already.

        A replay only reads (so it is still answered while the database is read-only); a new
        claim also forgets keys older than IDEMPOTENCY_TTL_S, which bounds the table."""
        now = time.time() if now is None else now
        with self._locked():
            row = self._db.execute(
                "SELECT fingerprint, status_code, body, created_at FROM idempotency_keys WHERE agent=? AND key=?",
                (agent, key),
            ).fetchone()
            expired = row is not None and (
                row["created_at"] < now - IDEMPOTENCY_TTL_S
                or (row["status_code"] is None and row["created_at"] < now - IDEMPOTENCY_STALE_S)
            )
            if row is not None and not expired:
                if row["fingerprint"] != fingerprint:
                    return IdempotencyClaim("mismatch")
                if row["status_code"] is None:
                    return IdempotencyClaim("pending")
                return IdempotencyClaim("done", row["status_code"], row["body"])
            with self._write():
                self._db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - IDEMPOTENCY_TTL_S,))
                self._db.execute("DELETE FROM idempotency_keys WHERE agent=? AND key=?", (agent, key))
                self._db.execute(
                    "INSERT INTO idempotency_keys VALUES (?,?,?,?,?,?)", (agent, key, fingerprint, None, None, now)
                )
        return IdempotencyClaim("new")

    def finish_idempotency_key(self, agent: str, key: str, status_code: int, body: str) -> None:
        """Remember the response of the request that claimed `key`, for its repeats."""
        with self._locked():
            self._db.execute(
                "UPDATE idempotency_keys SET status_code=?, body=? WHERE agent=? AND key=?",
                (status_code, body, agent, key),
            )

    def release_idempotency_key(self, agent: str, key: str) -> None:
        """Forget an unfinished claim: the request was refused or failed, so a retry may run it."""
        with self._locked():
            self._db.execute(
                "DELETE FROM idempotency_keys WHERE agent=? AND key=? AND status_code IS NULL", (agent, key)
            )
