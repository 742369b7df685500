"""The media workers `make run` starts beside the app: `WORKERS` processes of `worker.py`, each in
its own session (an app crash leaves them running; a restarted app adopts them from their pid
files) and stopped within seconds on a clean shutdown.

With `WORKERS=0` none are started: run `python worker.py` wherever you like.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from functions.settings import PROJECT_ROOT

log = logging.getLogger(__name__)
WORKER_PY = PROJECT_ROOT / "worker.py"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if status == "Z":  # a zombie child: dead, just not reaped yet
            return False
    return True


def _is_worker(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return False


class WorkerProcesses:
    def __init__(self, count: int, state_dir: Path, *, livekit_state: Path | None = None) -> None:
        self.count = count
        self.dir = state_dir
        self.livekit_state = livekit_state  # the embedded server's state dir, or None (LIVEKIT_URL)
        self._procs: dict[int, subprocess.Popen | None] = {}  # slot → our child (None: adopted)
        self._pids: dict[int, int] = {}

    def _pidfile(self, slot: int) -> Path:
        return self.dir / f"worker-{slot}.pid"

    def start(self) -> WorkerProcesses:
        self.dir.mkdir(parents=True, exist_ok=True)
        for slot in range(self.count):
            with contextlib.suppress(OSError, ValueError):
                pid = int(self._pidfile(slot).read_text())
                if _pid_alive(pid) and _is_worker(pid):
                    log.info("adopted media worker %d (pid %d)", slot, pid)
                    self._procs[slot], self._pids[slot] = None, pid
                    continue
            self._spawn(slot)
        return self

    def _spawn(self, slot: int) -> None:
        cmd = [sys.executable, str(WORKER_PY)]
        if self.livekit_state:
            cmd += ["--embedded", str(self.livekit_state)]
        logf = (self.dir / f"worker-{slot}.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT)
        self._procs[slot], self._pids[slot] = proc, proc.pid
        self._pidfile(slot).write_text(str(proc.pid))
        log.info("started media worker %d (pid %d), log %s", slot, proc.pid, logf.name)

    @property
    def pids(self) -> list[int]:
        return list(self._pids.values())

    def alive(self) -> list[int]:
        return [pid for pid in self._pids.values() if _pid_alive(pid)]

    def restart_dead(self) -> None:
        """A worker that died is replaced (its jobs were already re-dispatched by the control plane)."""
        for slot, pid in list(self._pids.items()):
            if not _pid_alive(pid):
                log.warning("media worker %d (pid %d) died; starting a new one", slot, pid)
                self._spawn(slot)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM to all, then SIGKILL what is left after `timeout` seconds."""
        for pid in self._pids.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for slot, pid in self._pids.items():
            proc = self._procs.get(slot)
            while _pid_alive(pid) and time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.05)
            if _pid_alive(pid):
                log.warning("media worker pid %d did not stop in %.0fs: killing it", pid, timeout)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            self._pidfile(slot).unlink(missing_ok=True)
        self._pids.clear()
        self._procs.clear()
