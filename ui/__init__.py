"""The Gradio UI: tabs Agent A, Agent B, Caller and Calls, mounted at `/` of the app.

`mount_ui(app, ctx)` is called by `app.create_app`; `share_link(app, host, port)` by
`python app.py --share`. Browser code (livekit-client from npm, the widgets' scripts and
CSS) is served from `/wt-static/`.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import threading
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response

from ui.backend import UiBackend
from ui.tabs import build_blocks, render_agent_tab, render_caller_tab, render_calls_tab
from ui.widgets import LIVEKIT_CLIENT, PROJECT_ROOT, STATIC_DIR, STATIC_ROUTE, VENDOR, livekit_room, wt_panel

__all__ = [
    "UiBackend",
    "build_blocks",
    "livekit_room",
    "mount_ui",
    "render_agent_tab",
    "render_caller_tab",
    "render_calls_tab",
    "share_link",
    "wt_panel",
]

log = logging.getLogger(__name__)
CSS_PATH = STATIC_DIR / "widgets.css"
GZIP_FROM_BYTES = 32_000
_MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json"}


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
    root = STATIC_DIR.resolve()
    gzipped: dict[tuple[Path, str], bytes] = {}  # (file, ETag) → its gzip: compressed once per version

    # Modules import each other by plain relative URLs (no `?v=`): every answer says `no-cache`, so the
    # browser revalidates each file with its ETag each time the page loads (304 when unchanged) and
    # never runs a stale module (see head_html in ui/widgets.py).
    @app.get(f"/{STATIC_ROUTE}/{{name:path}}", include_in_schema=False)
    async def wt_static(name: str, request: Request) -> Response:
        parts = name.split("/")
        # Only files of ui/static (and its folders) and livekit-client's module: no `..`, no dot files.
        refused = "\\" in name or any(not p or p.startswith(".") for p in parts)
        path = VENDOR.get(name) or STATIC_DIR.joinpath(*parts)
        if (
            refused
            or path.suffix not in _MEDIA
            or not path.is_file()
            or (name not in VENDOR and not path.resolve().is_relative_to(root))
        ):
            raise HTTPException(404, "not found" if LIVEKIT_CLIENT.exists() else "run `npm ci` (livekit-client)")
        stat = path.stat()
        # Weak: the gzipped and the plain answer are the same module (RFC 9110 8.8.1).
        version = hashlib.md5(f"{stat.st_mtime_ns}-{stat.st_size}".encode(), usedforsecurity=False).hexdigest()
        etag = f'W/"{version}"'
        headers = {"Cache-Control": "no-cache", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        headers["Vary"] = "Accept-Encoding"
        # livekit-client's module build is 1.4 MB (unminified; npm ships no minified ESM): 0.3 MB gzipped,
        # which is what a share link's browser waits for. Small files go as they are.
        if stat.st_size >= GZIP_FROM_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
            key = (path, etag)
            if key not in gzipped:
                gzipped[key] = await asyncio.to_thread(gzip.compress, path.read_bytes(), 6)
            headers["Content-Encoding"] = "gzip"
            return Response(gzipped[key], media_type=_MEDIA[path.suffix], headers=headers)
        return FileResponse(path, media_type=_MEDIA[path.suffix], headers=headers)


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
    # Not a patch, but not public API either: Blocks.launch(share=True) is the public way, and it runs
    # Gradio's own server; this app is FastAPI with Gradio mounted, and mount_gradio_app has no share.
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
