"""Who follows the control plane's events: every subscription to the event bus (and to presence's
changes) is made here and nowhere else, in the order the handlers then run.

1. Presence reads every transfer message and call status (calls and transfers change who is busy).
2. The call queue: an answered or ended call no longer waits (`call.status`), and an agent who
   became available is rung (presence's change listener).
3. The app's own followers, last, so they see presence and the queue already up to date: the UI's
   (`ui.backend.UiBackend.on_notification`, agents' dashboards redraw), which `app.create_app` hands
   to the context (`AppContext.followers`: control/ does not import ui/).

Who publishes: the orchestrator (calls and transfers), B's Q/A (`control.consult_qa`) and the Twilio
webhooks, all through the orchestrator's bus, which is the app context's (`control.context`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from control.bus import EventBus
from control.presence import Presence
from control.routing import CallQueue
from functions.events import CallStatusChanged, Notification

Follower = Callable[[Notification], None]


def follow(
    bus: EventBus, presence: Presence, calls: CallQueue, followers: Sequence[Follower] = ()
) -> Callable[[], None]:
    """Subscribe the control plane's parts and `followers` to `bus`; returns what undoes it all (the
    bus may outlive them: it is the app context's)."""
    undo = [
        bus.subscribe(presence.on_notification),
        bus.subscribe(calls.on_notification, CallStatusChanged),
        *(bus.subscribe(f) for f in followers),
    ]
    presence.on_change.append(calls.dispatch)

    def unfollow() -> None:
        for unsubscribe in undo:
            unsubscribe()
        if calls.dispatch in presence.on_change:
            presence.on_change.remove(calls.dispatch)

    return unfollow
