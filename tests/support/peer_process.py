"""A realtime peer in a process of its own, so a test can kill it: `kill -9` of a browser tab or a
phone that lost power, where nobody says goodbye to the LiveKit server (an in-process `Peer` can only
leave politely). The peer publishes a tone and listens (tests/support/peer.py).

    proc = PeerProcess("caller-1", 440).start(url, token)   # returns once connected and publishing
    proc.ask("hears", "agent-a")                             # → True / False
    proc.kill()                                              # SIGKILL: the connection just stops

Driven over stdin/stdout, one JSON line each way (`python -m tests.support.peer_process`):
  in: {"url", "token", "identity", "hz"}     → out: {"ready": true} or {"error": "..."}
  in: {"hears": identity}                    → out: {"hears": bool}
  in: {"audible": true}                      → out: {"audible": [identities]}
  in: {"messages": true}                     → out: {"messages": [data messages received]}
  in: {"quit": true} or EOF                  → leaves the room (bounded), exits
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any

from control.livekit_server import dies_with_parent
from functions.settings import PROJECT_ROOT

START_S = 45.0  # a fresh interpreter importing the SDK and connecting, on a busy 2-core machine
ASK_S = 10.0


class PeerProcess:
    def __init__(self, identity: str, hz: float | None = None) -> None:
        self.identity, self.hz = identity, hz
        self.proc: subprocess.Popen | None = None

    def start(self, url: str, token: str) -> PeerProcess:
        self.proc = subprocess.Popen(
            dies_with_parent([sys.executable, "-m", "tests.support.peer_process"]),  # never outlives the session
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        reply = self._ask({"url": url, "token": token, "identity": self.identity, "hz": self.hz}, START_S)
        if not reply.get("ready"):
            self.kill()
            raise AssertionError(f"{self.identity}: the peer process did not connect: {reply}")
        return self

    def ask(self, what: str, arg: Any = True) -> Any:
        return self._ask({what: arg}, ASK_S)[what]

    def _ask(self, msg: dict, timeout: float) -> dict:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = _readline(self.proc, timeout)
        return json.loads(line) if line else {"error": f"no answer within {timeout:g}s (exit {self.proc.poll()})"}

    def kill(self) -> None:
        """SIGKILL: no leave message, no WebRTC goodbye; the server finds out on its own."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """Bounded: asks it to leave, then kills it."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write('{"quit": true}\n')  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.kill()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        sel.close()


async def _main() -> None:
    from tests.support.peer import Peer

    def reply(msg: dict) -> None:
        print(json.dumps(msg), flush=True)

    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    peer = Peer(config["identity"], tone_hz=config.get("hz"))
    try:
        await peer.connect(config["url"], config["token"], publish=bool(config.get("hz")), timeout=30)
    except BaseException as e:
        reply({"error": f"{type(e).__name__}: {e}"})
        return
    reply({"ready": True})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = json.loads(line)
            if "hears" in cmd:
                reply({"hears": peer.hears(cmd["hears"])})
            elif "audible" in cmd:
                reply({"audible": sorted(peer.audible_identities())})
            elif "messages" in cmd:
                reply({"messages": peer.messages})
            else:
                break
    finally:
        await asyncio.wait_for(peer.disconnect(), 10)


if __name__ == "__main__":
    asyncio.run(_main())
