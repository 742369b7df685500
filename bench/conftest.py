"""Load benchmarks written as pytest tests (`.venv/bin/python -m pytest bench/ -s`): they reuse the
test suite's fixtures (real livekit-server, media worker, control-plane endpoint) but are not part
of `make test`, whose tests must stay bounded on a busy 2-core machine."""

from tests.api.conftest import *  # noqa: F403
from tests.conftest import *  # noqa: F403
