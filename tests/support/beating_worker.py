"""A worker's heartbeat alone, in a process of its own, so a test can `kill -9` it: the real
`media.heartbeat.Heartbeat` (beats and the liveness connection) reporting one call job to the
control plane at argv[1], with the API secret argv[2]. Prints its worker id as it starts.
`python -m tests.support.beating_worker URL SECRET`; SIGTERM says goodbye first, as the worker does."""

from __future__ import annotations

import asyncio
import signal
import sys

from functions.media_protocol import CallJob, JobEnvelope
from media.heartbeat import Heartbeat


async def main(url: str, secret: str) -> None:
    job = JobEnvelope(job=CallJob(call_id="c1", caller_identity="caller-c1", control_url=url)).model_dump_json()
    heartbeat = Heartbeat(lambda: [(job, "call-c1")], secret, keepalive_s=0.2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    beating = asyncio.ensure_future(heartbeat.run())
    print(heartbeat.worker_id, flush=True)
    await stop.wait()
    beating.cancel()
    await heartbeat.goodbye()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
