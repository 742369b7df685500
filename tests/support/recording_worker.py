"""`worker.py` with its jobs' gateway backends wrapped by `tests.support.recording_backend`:

    python -m tests.support.recording_worker RECORDS.jsonl --embedded DIR

Run with `-m` from the project root, so the job processes (started by livekit-agents) import this
package the same way. Everything else is the real worker."""

from __future__ import annotations

import functools
import sys

import worker
from tests.support.recording_backend import recording

if __name__ == "__main__":
    records, *rest = sys.argv[1:]
    sys.exit(worker.main(rest, wrap_backend=functools.partial(recording, records, "media worker")))
