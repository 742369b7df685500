"""Callers for the capacity bench, in a process of their own: the bench process is the control
plane, and callers beside it would measure their own load (every SDK event of a process is
offered to every room in it, so 50 callers and the orchestrator in one process starved both).

Driven over stdin/stdout, one JSON line each way:
  in:  {"url": ..., "callers": [{"identity", "token", "listen", "hold"}]}  → out: {"ready": n, "failed": k}
  in:  {"gaps": [from, to]}   → out: {"gaps": [[seconds, ...] per listening caller]}
       (time.monotonic() is CLOCK_MONOTONIC, the same clock in the bench process)
  in:  {"status": true}       → out: {"dropped": callers the server disconnected}
  in:  {"quit": true} or EOF  → every caller leaves (bounded), the process exits

Callers connect without publishing: on hold a caller listens, and a tone generator per caller
would be this process's load, not the system's.
"""

from __future__ import annotations

import asyncio
import json
import sys

from media.priority import drop_realtime_scheduling
from tests.support.peer import Peer, gaps


async def main() -> None:
    # These callers stand in for browsers and phones on other machines: as root their WebRTC audio
    # threads would run at real-time priority, ahead of the system they measure (see media.priority).
    drop_realtime_scheduling()
    config = json.loads(await asyncio.to_thread(sys.stdin.readline))
    # 50 ms frames: a tenth of the SDK events 10 ms frames make, at a resolution that still shows
    # every gap over 200 ms. Measured at 10 ms: the ten listening callers alone took 0.77 cores.
    peers = [(Peer(c["identity"], listen=c["listen"], frame_ms=50), c) for c in config["callers"]]

    async def connect(peer: Peer, c: dict) -> None:
        await peer.connect(config["url"], c["token"], publish=False, timeout=60)

    # A caller that could not connect within 60 s is counted, not fatal: on a saturated machine that
    # is a result of the level.
    outcomes = await asyncio.gather(*(connect(p, c) for p, c in peers), return_exceptions=True)
    reply({"ready": len(peers), "failed": sum(isinstance(o, BaseException) for o in outcomes)})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = json.loads(line)
            if "gaps" in cmd:
                start, end = cmd["gaps"]
                heard = [p.heard[c["hold"]].energy_times for p, c in peers if c["listen"]]
                reply({"gaps": [gaps(times, start, end) for times in heard]})
            elif "status" in cmd:
                reply({"dropped": sum(p.disconnected.is_set() for p, _ in peers)})
            else:
                break
    finally:
        await asyncio.gather(*(asyncio.wait_for(p.disconnect(), 10) for p, _ in peers), return_exceptions=True)


def reply(msg: dict) -> None:
    print(json.dumps(msg), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
