"""A worker's connect slots: at most N of its job processes join a room at the same time.

Measured on 2 cores: 25 calls starting at once meant 25 job processes doing their WebRTC
connect (signalling, ICE, DTLS, the first track) together; their own timeouts fired, they
retried, and the retries kept the machine saturated (4 of 25 call jobs had not joined after
120 s). One at a time takes about 0.1-0.3 s, so queueing them behind a few slots gets every job
in sooner. The slots are `flock`s on files in the worker's directory: job processes are separate
processes, and a lock held by one that dies is released by the kernel.

    slots = ConnectSlots(directory, 3)
    async with slots.slot():
        await ctx.connect(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)
POLL_S = 0.02


class ConnectSlots:
    def __init__(self, directory: Path, count: int, *, max_wait_s: float = 30.0) -> None:
        self.paths = [directory / f"connect-slot-{i}.lock" for i in range(count)]
        self.max_wait_s = max_wait_s  # past it the job connects anyway: a slot must never strand a call

    def _try(self) -> int | None:
        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Holds a slot for the block; yields how long it waited for one."""
        if not self.paths:  # no limit
            yield 0.0
            return
        started = time.monotonic()
        while (fd := self._try()) is None and time.monotonic() - started < self.max_wait_s:
            await asyncio.sleep(POLL_S)
        waited = time.monotonic() - started
        if fd is None:
            log.warning("no connect slot free after %.0f s: connecting without one", waited)
        try:
            yield waited
        finally:
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the lock
