"""A read-only mount or a full disk under the app's own SQLite connection, on demand.

The tests run as root, which ignores file modes, and cannot mount a small filesystem; what the app
would see is the same SQLite error either way (SQLITE_READONLY, SQLITE_FULL), so the fault is
SQLite's own `PRAGMA query_only` / `PRAGMA max_page_count` on the app's connection. The app is given
`SqliteFaults.connection` as its connection class (`Store(connection=…)`,
`AppContext(store_connection=…)`); a fault asked for is applied by the connection itself just before
the app's next statement outside a transaction, so it lands in the app's thread, under the app's
lock, never inside one of its transactions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

UNLIMITED_PAGES = 1073741823  # SQLite's default max_page_count


class SqliteFaults:
    def __init__(self) -> None:
        self.connections: dict[str, sqlite3.Connection] = {}  # by file name: what the app opened
        self._pending: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.connection = self._connection_class()

    def read_only(self, file: str, on: bool = True) -> None:
        """From the app's next statement on `file` (a file name), writes fail as on a read-only mount."""
        self._ask(file, f"PRAGMA query_only={'ON' if on else 'OFF'}")

    def disk_full(self, file: str, full: bool = True) -> None:
        """From the app's next statement on `file`, the file cannot grow by a page (or can again)."""
        self._ask(file, "max_page_count=<page_count>" if full else f"PRAGMA max_page_count={UNLIMITED_PAGES}")

    def in_transaction(self, file: str) -> bool:
        """Whether the app's connection to `file` has a transaction open (none should be left open)."""
        return self.connections[file].in_transaction

    def _ask(self, file: str, pragma: str) -> None:
        with self._lock:
            self._pending.setdefault(file, []).append(pragma)

    def _take(self, file: str) -> list[str]:
        with self._lock:
            return self._pending.pop(file, [])

    def _connection_class(self) -> type[sqlite3.Connection]:
        faults = self

        class FaultableConnection(sqlite3.Connection):
            def __init__(self, database, *args, **kwargs) -> None:
                super().__init__(database, *args, **kwargs)
                self.file = Path(str(database)).name
                faults.connections[self.file] = self

            def execute(self, sql, *params):
                if not self.in_transaction:
                    for pragma in faults._take(self.file):
                        if pragma == "max_page_count=<page_count>":
                            pages = super().execute("PRAGMA page_count").fetchone()[0]
                            pragma = f"PRAGMA max_page_count={pages}"
                        super().execute(pragma)
                return super().execute(sql, *params)

        return FaultableConnection
