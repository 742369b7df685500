"""A gateway backend double that records every call and delegates to the real backend it wraps.

    make_gateway(settings, services, wrap_backend=functools.partial(recording, path, "control plane"))
    MediaWorker(settings, wrap_backend=functools.partial(recording, path, "media worker"))

`functools.partial(recording, …)` is picklable (a module-level function and plain arguments), so it
travels to livekit-agents' job processes, which import this module and wrap their own gateway's
backends there. Every call appends one JSON line to `path` (a file in the test's tmp dir, shared by
the processes: one `write` per line in append mode, which Linux keeps whole):
`{"function", "where" (the wrapped backend's label), "kind", "origin", "pid", "ok", "error", "at", "duration_s"}`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from functions.gateway import Backend, EntryPoint


class RecordingBackend:
    def __init__(self, inner: Backend, path: Path, origin: str) -> None:
        self.inner = inner
        self.path = Path(path)
        self.origin = origin
        self.kind = inner.kind
        self.label = inner.label

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel:
        started = time.monotonic()
        try:
            result = await self.inner.call(ep, request)
        except Exception as e:
            self._write(ep.name, started, error=f"{type(e).__name__}: {e}")
            raise
        self._write(ep.name, started)
        return result

    def _write(self, function: str, started: float, error: str = "") -> None:
        line = {
            "function": function,
            "where": self.label,
            "kind": self.kind,
            "origin": self.origin,
            "pid": os.getpid(),
            "ok": not error,
            "error": error[:300],
            "at": time.time(),
            "duration_s": round(time.monotonic() - started, 4),
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def recording(path: str | Path, origin: str, backend: Backend) -> RecordingBackend:
    """`wrap_backend` for `make_gateway` / `MediaWorker` (bind `path` and `origin` with functools.partial)."""
    return RecordingBackend(backend, Path(path), origin)


def read_records(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
