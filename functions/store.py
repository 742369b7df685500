"""SQLite persistence for calls, transfers, the transfer event log and transcripts.

One connection guarded by a lock: writes are tiny and the app is one process, so
this is simpler and faster than a pool. WAL mode keeps readers off the writer.
State transitions are compare-and-set inside one transaction with their event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from functions.errors import Conflict, InvalidInput, NotFound
from functions.models import (
    TERMINAL_STATES,
    Call,
    CallStatus,
    TranscriptSegment,
    Transfer,
    TransferEvent,
    TransferState,
)
from functions.state_machine import check_transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, room TEXT NOT NULL, caller_identity TEXT NOT NULL, caller_name TEXT NOT NULL,
    agent_identity TEXT, status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY, call_id TEXT NOT NULL REFERENCES calls(call_id), call_room TEXT NOT NULL,
    consult_room TEXT NOT NULL, from_agent TEXT NOT NULL, target_kind TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL
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
"""

_OPEN = tuple(s.value for s in TransferState if s not in TERMINAL_STATES)


class Store:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- calls -------------------------------------------------------------------------
    def add_call(self, call: Call) -> Call:
        with self._lock:
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
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE call_id=?", (call_id,)).fetchone()
        if row is None:
            raise NotFound(f"no call '{call_id}'")
        return Call(**dict(row))

    def call_by_room(self, room: str) -> Call | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE room=?", (room,)).fetchone()
        return Call(**dict(row)) if row else None

    def list_calls(self, *, include_ended: bool = False) -> list[Call]:
        sql = "SELECT * FROM calls" + ("" if include_ended else " WHERE status != 'ended'") + " ORDER BY created_at"
        with self._lock:
            return [Call(**dict(r)) for r in self._db.execute(sql)]

    def update_call(self, call_id: str, **fields: object) -> Call:
        allowed = {"agent_identity", "status", "caller_name"}
        if not set(fields) <= allowed:
            raise InvalidInput(f"cannot update call fields {sorted(set(fields) - allowed)}")
        values = {k: (v.value if isinstance(v, CallStatus) else v) for k, v in fields.items()}
        values["updated_at"] = time.time()
        cols = ", ".join(f"{k}=?" for k in values)
        with self._lock:
            cur = self._db.execute(f"UPDATE calls SET {cols} WHERE call_id=?", (*values.values(), call_id))
            if cur.rowcount == 0:
                raise NotFound(f"no call '{call_id}'")
        return self.get_call(call_id)

    # --- transfers ------------------------------------------------------------------------
    def add_transfer(self, t: Transfer) -> Transfer:
        """Insert a new transfer; refuses a second open transfer on the same call."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                busy = self._db.execute(
                    f"SELECT transfer_id FROM transfers WHERE call_id=? AND state IN ({','.join('?' * len(_OPEN))})",
                    (t.call_id, *_OPEN),
                ).fetchone()
                if busy:
                    raise Conflict(f"call '{t.call_id}' already has an open transfer '{busy[0]}'")
                self._db.execute(
                    "INSERT INTO transfers VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get_transfer(t.transfer_id)

    def get_transfer(self, transfer_id: str) -> Transfer:
        with self._lock:
            row = self._db.execute("SELECT * FROM transfers WHERE transfer_id=?", (transfer_id,)).fetchone()
            if row is None:
                raise NotFound(f"no transfer '{transfer_id}'")
            events = self._db.execute(
                "SELECT * FROM transfer_events WHERE transfer_id=? ORDER BY seq", (transfer_id,)
            ).fetchall()
        return Transfer(
            **dict(row),
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
        with self._lock:
            ids = [r[0] for r in self._db.execute(sql + " ORDER BY created_at", args)]
        return [self.get_transfer(i) for i in ids]

    def transition(
        self, transfer_id: str, new: TransferState, *, actor: str, reason: str = "", detail: dict | None = None
    ) -> Transfer:
        """Apply one legal transition and append its event, atomically. Illegal: raises, changes nothing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT state FROM transfers WHERE transfer_id=?", (transfer_id,)).fetchone()
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
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get_transfer(transfer_id)

    # --- transcripts --------------------------------------------------------------------------
    def add_segment(self, call_id: str, seg: TranscriptSegment, transfer_id: str | None = None) -> int:
        with self._lock:
            seq = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM transcript_segments WHERE call_id=?", (call_id,)
            ).fetchone()[0]
            self._db.execute(
                "INSERT INTO transcript_segments VALUES (?,?,?,?,?,?,?,?,?)",
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
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            TranscriptSegment(
                speaker=r["speaker"], text=r["text"], start=r["start"], end=r["end_"], words=json.loads(r["words"])
            )
            for r in rows
        ]
