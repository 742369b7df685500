"""Browser end-to-end fixtures: the real app (create_app under uvicorn, in a thread)
against the session's real livekit-server, and Debian's Chromium driven by Playwright
with fake media devices whose microphone plays a real speech file (espeak-ng).

Skips only when /usr/bin/chromium is missing (CI's setup installs it with apt-get).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from control.livekit_server import free_port
from control.rooms import Rooms
from functions.settings import PROJECT_ROOT
from functions.tts.speech import EspeakSpeaker
from tests.integration.conftest import end_everything

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
SPEECH = (
    "Hello, this is Maria Lopez. My order four four one seven arrived damaged, "
    "and I would like a replacement sent this week please."
)
# The agents' microphones say something else, so captions show whose words are whose.
AGENT_SPEECH = "Thanks Maria. I am sorry about that. Let me bring in a colleague from returns."


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium (CI's setup does)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def speech_file(folder: Path, text: str, *, pause_s: float = 0.0) -> Path:
    """Real speech for a fake microphone: espeak-ng, resampled to 48 kHz mono with sox, then
    `pause_s` of silence (Chromium loops the file: one utterance per loop)."""
    raw, wav = folder / "raw.wav", folder / "speech-48k.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    if shutil.which("sox"):
        pad = ["pad", "0", str(pause_s)] if pause_s else []
        subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav), *pad], check=True)
        return wav
    if pause_s:
        raise RuntimeError("sox is needed for a speech file with pauses (apt-get install sox)")
    return raw


@pytest.fixture(scope="session")
async def playwright():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        yield p


async def launch(playwright, microphone: Path):
    """Chromium whose fake microphone loops the given speech file."""
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"],
    )


@pytest.fixture(scope="session")
async def browser(playwright, tmp_path_factory):
    """The browser every tab uses unless a test asks for agent_browser: it speaks SPEECH."""
    b = await launch(playwright, speech_file(tmp_path_factory.mktemp("speech"), SPEECH))
    yield b
    await b.close()


@pytest.fixture
async def agent_browser(playwright, tmp_path):
    """A second Chromium for the agents' tabs, whose microphone speaks AGENT_SPEECH."""
    b = await launch(playwright, speech_file(tmp_path, AGENT_SPEECH))
    yield b
    await b.close()


class AppServer:
    """create_app(settings) served by uvicorn in its own thread (its own event loop)."""

    def __init__(self, settings) -> None:
        from app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.app = create_app(settings, speaker=EspeakSpeaker(settings))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.app.state.stopping = lambda: self.server.should_exit  # as app.main: long requests let go
        self.thread = threading.Thread(target=self.server.run, name="app-under-test", daemon=True)

    def start(self, timeout: float = 60.0) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start (see the log above)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
async def app_factory(control_settings, control_hub):
    """start(**setting_overrides) → a running AppServer; all are stopped after the test."""
    started: list[tuple[AppServer, object]] = []

    async def start(**overrides) -> AppServer:
        # Live transcription (Whisper on 2 cores) is covered by its own tests; here it would
        # only compete with three browsers for the CPU.
        app_settings = control_settings.model_copy(update={"live_transcription": False, **overrides})
        server = await asyncio.to_thread(AppServer(app_settings).start)
        ctx = server.app.state.ctx
        started.append((server, control_hub.add(ctx.sinks, loop=ctx.loop)))
        return server

    yield start
    for server, unregister in started:
        ctx = server.app.state.ctx
        if ctx.orchestrator:
            done = asyncio.run_coroutine_threadsafe(end_everything(ctx.orchestrator), ctx.loop)
            await asyncio.wait_for(asyncio.wrap_future(done), 15)
        unregister()
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def app_server(app_factory):
    return await app_factory()


@pytest.fixture
async def lk_api(settings):
    """The LiveKit server API, independent of the app: who is in which room."""
    rooms = Rooms(settings)
    yield rooms
    await rooms.aclose()


@pytest.fixture
def shots(request):
    """shots(page, "step") saves artifacts/screenshots/<test>/<nn>-<step>.png."""
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    counter = [0]

    async def take(page, step: str) -> Path:
        counter[0] += 1
        path = folder / f"{counter[0]:02d}-{step}.png"
        await page.screenshot(path=str(path))
        return path

    def watch(page, who: str) -> None:
        """Keep the page's console and errors next to the screenshots."""
        log = (folder / f"console-{who}.log").open("a")
        page.on("console", lambda m: log.write(f"{time.strftime('%X')} {m.type}: {m.text}\n") or log.flush())
        page.on("pageerror", lambda e: log.write(f"{time.strftime('%X')} pageerror: {e}\n") or log.flush())

    take.watch = watch
    return take
