"""The test session's control-plane endpoint: the session's livekit-server sends its webhooks here
and the session's media worker its reports, and the hub hands them to every control plane a test
has running (an orchestrator in the test's loop, or an app under uvicorn in its own thread). Each
ignores rooms and calls it does not own, as the app does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI

from control.control_routes import control_router


class _OnLoop:
    """A sink whose coroutines run on the loop that owns it."""

    def __init__(self, sink, loop: asyncio.AbstractEventLoop) -> None:
        self.sink, self.loop = sink, loop

    async def _run(self, coro) -> None:
        if asyncio.get_running_loop() is self.loop:
            await coro
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def on_livekit_event(self, event) -> None:
        await self._run(self.sink.on_livekit_event(event))

    async def on_media_report(self, report) -> None:
        await self._run(self.sink.on_media_report(report))


class ControlHub:
    def __init__(self, settings: Callable) -> None:
        self._providers: list[tuple[Callable[[], list], asyncio.AbstractEventLoop]] = []
        self.app = FastAPI()
        self.app.include_router(control_router(settings, self.sinks))

    def add(self, provider: Callable[[], list], loop: asyncio.AbstractEventLoop | None = None) -> Callable[[], None]:
        entry = (provider, loop or asyncio.get_running_loop())
        self._providers.append(entry)
        return lambda: self._providers.remove(entry) if entry in self._providers else None

    def drop(self, sink) -> None:
        """Stop delivering to `sink` (a control plane that "crashed")."""
        self._providers = [(p, loop) for p, loop in self._providers if sink not in p()]

    def sinks(self) -> list:
        return [_OnLoop(sink, loop) for provider, loop in list(self._providers) for sink in provider()]
