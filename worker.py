"""Entry point of the media plane: one LiveKit Agents worker process.

    python worker.py                 # joins LIVEKIT_URL (or the embedded server under DATA_DIR)
    python worker.py --embedded DIR  # the embedded server whose state (keys, port) is in DIR

Run as many as you like, on any machine that reaches the LiveKit server: the server dispatches
each call's and consult's job to one of them by load. SIGTERM/SIGINT stop it within seconds; the
control plane re-dispatches the jobs it was running to the other workers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from functions.errors import ConfigError
from functions.settings import embedded_settings, load_settings
from media.priority import (
    descendants_last,
    end_descendants,
    no_realtime_for_the_media_plane,
    session_below_the_control_plane,
)

log = logging.getLogger("worker")
SHUTDOWN_S = 6.0  # SIGTERM → exit, at most (plus a moment for the SDK to say goodbye)


async def _run(settings, wrap_backend=None) -> None:
    from media.worker import MediaWorker

    worker = MediaWorker(settings, wrap_backend=wrap_backend)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.ensure_future(worker.run())
    await asyncio.wait([run, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    # Jobs leave their rooms, bounded. Not `wait_for`: on its timeout it waits for the cancelled close
    # to unwind, which is not bounded.
    stopping = time.monotonic()
    descendants_last()  # 50 busy job processes outweighed this one: its stop took 10 s, measured
    closing = asyncio.ensure_future(worker.aclose())
    await asyncio.wait([closing], timeout=SHUTDOWN_S)
    log.info("worker closed in %.1f s (%s)", time.monotonic() - stopping, "done" if closing.done() else "cut short")
    # Job threads and the SDK's own threads are not ours to join: whatever is left after the bounded
    # close must not keep the process alive (a stuck exit would hang `make run` and CI teardown).
    # Nor may its children outlive it: livekit-agents' forkserver and its idle job processes did,
    # as orphans, after every worker stop (measured: 0.3 % of a core each, for good).
    end_descendants()
    log.info("worker stopped %.1f s after it was asked to", time.monotonic() - stopping)
    logging.shutdown()
    os._exit(1 if run.done() and not run.cancelled() and run.exception() else 0)


def main(argv: list[str] | None = None, *, wrap_backend=None) -> int:
    """`wrap_backend`: see `media.worker.MediaWorker` (tests/support/recording_worker.py passes one)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedded", type=Path, default=None, help="state dir of an embedded livekit-server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        if args.embedded or not settings.livekit_url:
            settings = embedded_settings(settings, args.embedded or settings.data_dir / "livekit")
    except ConfigError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    # Before any thread or job process exists. The job processes and the model host lower their own
    # priority (media.priority); this process keeps its own within the session, so its heartbeat is
    # on time.
    no_realtime_for_the_media_plane()
    session_below_the_control_plane(settings.worker_nice)  # the whole session, when it is ours
    asyncio.run(_run(settings, wrap_backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
