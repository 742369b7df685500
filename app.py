"""Composition root of the control plane: one FastAPI server on one port with the Gradio UI
mounted at `/`, the HTTP API under `/api`, Twilio webhooks under `/twilio`, and LiveKit's
webhooks and the media workers' reports under `/livekit/webhook` and `/internal/media`.

`python app.py` serves on 127.0.0.1:7860. Without LIVEKIT_URL it runs an embedded livekit-server
(its own process; a restarted app re-attaches to it) and WORKERS media workers (worker.py).
`--share` asks Gradio for a public link.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from control.api import api_router
from control.body_limit import install_body_limits
from control.context import AppContext
from control.control_routes import control_router
from control.instance_lock import InstanceLock
from functions.errors import ConfigError
from functions.settings import Settings, load_settings
from ui import mount_ui

log = logging.getLogger("warm-transfer")
GRACEFUL_SHUTDOWN_S = 2


def create_app(settings: Settings | None = None, **providers: object) -> FastAPI:
    settings = settings or load_settings()
    ctx = AppContext(settings, **providers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await ctx.start()
        try:
            yield
        finally:
            await ctx.stop()

    app = FastAPI(title="Warm Transfer", version="1", lifespan=lifespan)
    app.state.ctx = ctx
    install_body_limits(app)  # /api, /twilio, /livekit/webhook, /internal/media: bodies bounded while streaming
    _add_cors(app, settings)  # added after, so CORS is outermost and a 413 still carries CORS headers
    app.include_router(api_router(ctx))  # /api
    app.include_router(control_router(lambda: ctx.settings, ctx.sinks))  # /livekit/webhook, /internal/media
    _mount_twilio(app, ctx)  # /twilio, when configured
    ui = mount_ui(app, ctx)  # Gradio at /, last: it catches every other path
    ctx.followers.append(ui.on_notification)  # the UI follows the bus after the control plane's parts
    return app


def _add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS is closed unless CORS_ORIGINS lists origins (comma-separated) allowed to call the app.

    The middleware is added even with no origins: its presence makes the mounted Gradio app
    defer to this policy instead of answering cross-origin preflights itself (for every path
    under `/`, which would otherwise include the API's)."""
    from fastapi.middleware.cors import CORSMiddleware

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key", "X-Agent-Passcode", "X-Agent-Identity", "Idempotency-Key"],
        expose_headers=["X-API-Version", "X-Sample-Rate", "X-Audio-Format", "Idempotent-Replayed", "Retry-After"],
    )


def _mount_twilio(app: FastAPI, ctx: AppContext) -> None:
    if ctx.base_settings.twilio_configured:
        from control.twilio_webhooks import twilio_router

        # Resolved per request: the router exists before startup and answers 503 until then.
        app.include_router(twilio_router(lambda: ctx.orchestrator, ctx.base_settings, lambda: ctx.phone))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=None, help="bind address (default APP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default APP_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    try:
        InstanceLock(settings.data_dir).check()  # a clear refusal before anything starts (the app takes it)
    except ConfigError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    host = args.host or settings.app_host
    port = args.port or settings.app_port
    app = create_app(settings)
    if args.share:
        from ui import share_link  # only for --share

        if not settings.livekit_url:
            log.warning(
                "--share: remote browsers reach the UI, but the embedded LiveKit server listens on 127.0.0.1 "
                "only, so they get no audio. Set LIVEKIT_URL (+ LIVEKIT_API_KEY, LIVEKIT_API_SECRET) to a "
                "LiveKit server they can reach, e.g. LiveKit Cloud."
            )

        share_link(app, host, port)
    # Bounded: open streams (the UI's event streams) get this long to finish, then the app stops anyway.
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(config)
    # The workers' liveness connections let go as soon as the server is asked to stop (control_routes).
    app.state.stopping = lambda: server.should_exit
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
