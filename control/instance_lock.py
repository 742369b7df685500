"""One control plane per DATA_DIR.

The control plane keeps its state in DATA_DIR (the SQLite store, the embedded LiveKit server's keys
and pid, the media workers' pid files) and its per-call locks and timers in memory. A second app on
the same DATA_DIR would start a LiveKit server of its own and answer 404 for the calls of the first
(measured, issue 15), so it refuses to start instead, saying which process holds the directory.

The lock is `flock` on `DATA_DIR/control-plane.lock`: the kernel drops it when the holder dies, so
an app killed with `kill -9` never leaves a stale lock behind and its successor starts at once. The
file holds the holder's pid, for the message only. (Several control planes on one state need a
shared database and timers any instance can fire; see the README, "Multi-instance control plane".)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from functions.errors import ConfigError

LOCK_NAME = "control-plane.lock"


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        """Hold the lock until `release()` (or this process ends); ConfigError if another process holds it."""
        if self._fd is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(self._refusal()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def check(self) -> None:
        """Raise the same ConfigError as `acquire` would, without keeping the lock (a start-up probe)."""
        self.acquire()
        self.release()

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _refusal(self) -> str:
        pid = ""
        with contextlib.suppress(OSError):
            pid = self.path.read_text().strip()
        holder = f"process {pid}" if pid.isdigit() else "another process"
        return (
            f"another control plane ({holder}) is already running on DATA_DIR={self.data_dir}: "
            "two would each start their own LiveKit server and disagree about calls. Stop it first, "
            "or give this one another DATA_DIR"
        )
