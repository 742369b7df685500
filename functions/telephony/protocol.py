"""The one Protocol a phone dialer implements (Twilio; tests use a local peer recording its REST calls).

Synchronous on purpose: the SDKs have sync clients; callers run it in worker threads.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from functions.models import DialRequest, DialResult


@runtime_checkable
class Dialer(Protocol):
    name: str

    def dial(self, request: DialRequest, *, status_callback: str, answer_url: str) -> DialResult: ...

    def hangup(self, call_sid: str) -> None: ...
