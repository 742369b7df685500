"""The control plane's in-process event bus: the typed messages of `functions/events.py`, from those
who publish them (the orchestrator, B's Q/A, the Twilio webhooks) to those who follow them (presence,
the call queue, the UI), one bus per app context (`control/context.py` owns it).

Handlers are synchronous and quick (slow work goes to a task they spawn), so publishing never waits;
one that raises is logged and the others still run. They are called in the order they subscribed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from functions.events import Notification

log = logging.getLogger(__name__)
N = TypeVar("N", bound=Notification)


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[tuple[tuple[type[Notification], ...], Callable[[Notification], None]]] = []

    def subscribe(self, handler: Callable[[N], None], *types: type[N]) -> Callable[[], None]:
        """Call `handler` with every message published that is one of `types` (every message when
        none is named). Returns what ends the subscription."""
        entry = (types or (Notification,), handler)
        self._handlers.append(entry)

        def unsubscribe() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)

        return unsubscribe

    def publish(self, msg: Notification) -> None:
        for types, handler in list(self._handlers):
            if isinstance(msg, types):
                try:
                    handler(msg)
                except Exception:
                    log.exception("%s: a handler of %s failed", handler, msg.type)
