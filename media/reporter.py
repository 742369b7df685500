"""Job → control plane reports (`POST {control_url}/internal/media`), best effort and bounded.

A report that cannot be delivered is logged and dropped: the call's audio never waits on the
control plane, and the control plane reconciles from LiveKit (webhooks, RoomService) anyway.
"""

from __future__ import annotations

import logging

import httpx

from functions.background import Background
from functions.media_protocol import INTERNAL_PATH, MediaReport, ReportEnvelope, internal_token

log = logging.getLogger(__name__)


class Reporter:
    """One per job (its own event loop): an HTTP client with a short deadline."""

    def __init__(self, control_url: str, api_secret: str, *, timeout_s: float = 3.0) -> None:
        self._url = control_url.rstrip("/") + INTERNAL_PATH
        self._client = httpx.AsyncClient(
            timeout=timeout_s, headers={"Authorization": f"Bearer {internal_token(api_secret)}"}
        )
        self._background = Background()

    def post(self, report: MediaReport) -> None:
        """Send without waiting (from event callbacks)."""
        self._background.spawn(self.send(report))

    async def send(self, report: MediaReport) -> bool:
        body = ReportEnvelope(report=report).model_dump(mode="json")
        try:
            r = await self._client.post(self._url, json=body)
        except httpx.HTTPError as e:
            log.warning("report %s not delivered to the control plane: %s", report.kind, e)
            return False
        if r.status_code >= 300:
            log.warning("report %s refused by the control plane: %s %s", report.kind, r.status_code, r.text[:200])
            return False
        return True

    async def aclose(self) -> None:
        await self._background.wait(timeout=1.0)  # last reports get a moment, never more
        self._background.cancel()
        await self._client.aclose()
