"""What the caller is told while a transfer is under way: the texts of the ANNOUNCE_* settings,
filled in. The call job speaks them (TTS through its gateway, `media.jobs.HoldAudio`), led by the
call room's metadata (`CallRoomState`); the caller page shows the same words."""

from __future__ import annotations

from functions.media_protocol import CallRoomState
from functions.models import Transfer
from functions.settings import Settings


def spoken(name: str) -> str:
    """A queue name as it is said: "tech_support" → "tech support"."""
    return name.replace("_", " ").replace("-", " ")


def hold_announcement(settings: Settings, t: Transfer) -> str:
    if t.queue:
        return settings.announce_hold_queue.format(queue=spoken(t.queue))
    return settings.announce_hold


def hold_speech(settings: Settings, t: Transfer) -> CallRoomState:
    """While the caller is on hold for transfer `t`: the announcement, then a reminder every few seconds."""
    return CallRoomState(
        episode=t.transfer_id,
        announce=hold_announcement(settings, t),
        remind=settings.announce_reminder if settings.announce_reminder_s > 0 else "",
        remind_every_s=settings.announce_reminder_s,
    )


def back_speech(settings: Settings, t: Transfer, agent_name: str) -> CallRoomState:
    """The transfer rolled back: the caller is back with A, and told so."""
    return CallRoomState(episode=t.transfer_id, say=back_text(settings, agent_name))


def back_text(settings: Settings, agent_name: str) -> str:
    return settings.announce_back.format(agent=agent_name)
