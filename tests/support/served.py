"""An ASGI app served by a real uvicorn on a free loopback port, in a thread of its own (its
own event loop, lifespan run): for tests that need real HTTP (streamed bodies, schemathesis)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class Served:
    """The app under uvicorn in a thread of its own (its own event loop, lifespan run)."""

    def __init__(self, app) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        app.state.stopping = lambda: self.server.should_exit  # long requests let go (control_routes)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()
