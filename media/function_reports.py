"""A job tells the control plane where its service functions ran.

The job's gateway (built per job process by `media.worker.prewarm_process`) records, per entry point,
where its last call ran and whether it fell back (`FunctionsGateway.function_status`). The control
plane cannot see that gateway, so the job reports it (`FunctionsReport`): when a function's status
changes (another backend, a fallback or its reason, a failure), and otherwise at most every
FUNCTIONS_REFRESH_S so the time shown stays recent. One small POST per change: a transcribed call
sends one after its first utterance and then one every FUNCTIONS_REFRESH_S at most while it talks.
"""

from __future__ import annotations

import time

from functions.gateway import FunctionsGateway
from functions.media_protocol import FUNCTIONS_REFRESH_S, FunctionsReport
from functions.models import FunctionStatus
from media.reporter import Reporter


class FunctionReports:
    def __init__(
        self,
        gateway: FunctionsGateway,
        reporter: Reporter,
        call_id: str,
        transfer_id: str | None = None,
        *,
        refresh_s: float = FUNCTIONS_REFRESH_S,
    ) -> None:
        self.gateway = gateway
        self.reporter = reporter
        self.call_id = call_id
        self.transfer_id = transfer_id
        self.refresh_s = refresh_s
        self._sent: dict[str, tuple[FunctionStatus, float]] = {}  # function → (what was sent, when)

    def start(self) -> FunctionReports:
        self.gateway.listeners.append(self.on_status)
        return self

    def on_status(self, status: FunctionStatus) -> None:
        now = time.monotonic()
        sent = self._sent.get(status.function)
        if sent is not None and status.same_as(sent[0]) and now - sent[1] < self.refresh_s:
            return
        self._sent[status.function] = (status, now)
        self.reporter.post(FunctionsReport(call_id=self.call_id, transfer_id=self.transfer_id, functions=[status]))

    def close(self) -> None:
        if self.on_status in self.gateway.listeners:
            self.gateway.listeners.remove(self.on_status)
