"""The Gradio UI: tabs Agent A, Agent B, Caller and Calls, mounted at `/` of the app.

`mount_ui(app, ctx)` is called by `app.create_app`; `share_link(app, host, port)` by
`python app.py --share`. Browser code (livekit-client from npm, the widgets' scripts and
CSS) is served from `/wt-static/`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import threading

import gradio as gr
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from ui.backend import UiBackend
from ui.tabs import build_blocks, render_agent_tab, render_caller_tab, render_calls_tab
from ui.widgets import LIVEKIT_CLIENT, PROJECT_ROOT, STATIC_DIR, STATIC_ROUTE, LiveKitRoom, WtPanel

__all__ = [
    "LiveKitRoom",
    "UiBackend",
    "WtPanel",
    "build_blocks",
    "mount_ui",
    "render_agent_tab",
    "render_caller_tab",
    "render_calls_tab",
    "share_link",
]

log = logging.getLogger(__name__)
CSS_PATH = STATIC_DIR / "widgets.css"
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".map": "application/json"}


def ensure_livekit_client() -> bool:
    """livekit-client comes from npm (`npm ci`, pinned in package-lock.json). Setup installs it;
    a Hugging Face Space (SPACE_ID set) or WT_NPM_CI=1 runs `npm ci` here when it is missing."""
    if LIVEKIT_CLIENT.exists():
        return True
    npm = shutil.which("npm")
    if not (os.environ.get("SPACE_ID") or os.environ.get("WT_NPM_CI") == "1") or npm is None:
        log.warning("%s is missing: run `npm ci` in the project root; the call widgets cannot load", LIVEKIT_CLIENT)
        return False
    log.info("installing livekit-client with npm ci")
    try:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"], cwd=PROJECT_ROOT, check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("npm ci failed (%s): the call widgets cannot load", e)
    return LIVEKIT_CLIENT.exists()


def _static_routes(app: FastAPI) -> None:
    ensure_livekit_client()

    @app.get(f"/{STATIC_ROUTE}/{{name}}", include_in_schema=False)
    async def wt_static(name: str) -> FileResponse:
        if name in ("livekit-client.umd.js", "livekit-client.umd.js.map"):
            path = LIVEKIT_CLIENT.with_name(name)
        else:
            path = STATIC_DIR / name
        # Only plain file names from the two folders: no paths, no other files.
        if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in _MEDIA or not path.is_file():
            raise HTTPException(404, "not found" if LIVEKIT_CLIENT.exists() else "run `npm ci` (livekit-client)")
        return FileResponse(path, media_type=_MEDIA[path.suffix], headers={"Cache-Control": "no-cache"})


def mount_ui(app: FastAPI, ctx) -> UiBackend:
    """Build the Blocks and mount them at `/` (after the app's own routes). Returns the UI's backend,
    whose `on_notification` the app hands to the context as a follower of its bus."""
    backend = UiBackend(ctx)
    app.state.ui = backend
    _static_routes(app)
    blocks = build_blocks(backend)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        css_paths=[CSS_PATH],
        footer_links=[],
        run_history=False,
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
    )
    return backend


def share_link(app: FastAPI, host: str, port: int) -> threading.Thread:
    """Ask Gradio's share service for a public URL tunnelled to host:port (prints it).

    The browser must also reach LiveKit: with the embedded server (loopback only) a
    share link shows the UI but calls cannot connect; set LIVEKIT_URL to a public
    LiveKit deployment for that (see docs/ui.md)."""
    from gradio import networking

    ctx = getattr(app.state, "ctx", None)
    if ctx is not None and not ctx.base_settings.livekit_url:
        log.warning("--share with the embedded LiveKit server: remote browsers cannot reach it; set LIVEKIT_URL")

    def run() -> None:
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        try:
            url = networking.setup_tunnel(local, port, secrets.token_urlsafe(32), None, None)
        except Exception as e:
            print(f"* Could not create a share link: {e} (the app still runs locally)", flush=True)
            return
        print(f"* Running on public URL: {url}", flush=True)

    thread = threading.Thread(target=run, name="gradio-share", daemon=True)
    thread.start()
    return thread
