"""Job → control plane reports (`POST {control_url}/internal/media`), best effort and bounded.

A report that cannot be delivered is logged and dropped: the call's audio never waits on the
control plane, and the control plane reconciles from LiveKit (webhooks, RoomService) anyway.
It uses the job's own aiohttp session (livekit-agents' `http_context`, one per job loop, with
the worker's shared TLS context), so starting a job costs no client construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp

from functions.background import Background
from functions.media_protocol import INTERNAL_PATH, MediaReport, ReportEnvelope, internal_token

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self, control_url: str, api_secret: str, session: Callable[[], aiohttp.ClientSession], *, timeout_s: float = 3.0
    ) -> None:
        self._url = control_url.rstrip("/") + INTERNAL_PATH
        self._session = session
        self._headers = {"Authorization": f"Bearer {internal_token(api_secret)}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._background = Background()

    def post(self, report: MediaReport) -> None:
        """Send without waiting (from event callbacks)."""
        self._background.spawn(self.send(report))

    async def send(self, report: MediaReport) -> bool:
        body = ReportEnvelope(report=report).model_dump(mode="json")
        for attempt in (1, 2):
            try:
                return await self._post(report, body)
            except aiohttp.ServerDisconnectedError as e:
                # Usually a pooled keep-alive connection the control plane had just closed, so the
                # request never reached it (a transcript segment was lost this way in the integration
                # tier): one retry on a fresh connection. Only a control plane that died mid-request
                # could see it twice, and then it is restarting anyway.
                if attempt == 1:
                    continue
                log.warning("report %s not delivered to the control plane: %s", report.kind, e)
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning("report %s not delivered to the control plane: %s", report.kind, e)
                break
        return False

    async def _post(self, report: MediaReport, body: dict) -> bool:
        async with self._session().post(self._url, json=body, headers=self._headers, timeout=self._timeout) as r:
            if r.status >= 300:
                text = await r.text()
                log.warning("report %s refused by the control plane: %s %s", report.kind, r.status, text[:200])
                return False
            return True

    async def aclose(self) -> None:
        await self._background.wait(timeout=1.0)  # last reports get a moment, never more
        self._background.cancel()
