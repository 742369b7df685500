"""A stand-in for `control.rooms.Rooms` in unit tests of presence and routing: who is in which
room (set by the test, as LiveKit's RoomService would answer) and every data message sent. The
integration tier runs the same code against the real livekit-server."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from livekit import api

from control.presence import LOBBY


class RoomsDouble:
    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = defaultdict(dict)  # room → identity → name
        self.sent: list[tuple[str, str, dict, list[str] | None]] = []  # (room, type, payload, to)

    async def list_participants(self, room: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(identity=i, name=n) for i, n in self.members[room].items()]

    async def identities(self, room: str) -> set[str]:
        return set(self.members[room])

    async def send(self, room: str, message, identities: list[str] | None = None) -> bool:
        self.post(room, message, identities)
        return True

    def post(self, room: str, message, identities: list[str] | None = None) -> None:
        self.sent.append((room, message.type, message.model_dump(mode="json")["payload"], identities))  # as sent

    def of(self, kind: str) -> list[tuple[str, dict, list[str] | None]]:
        return [(room, payload, to) for room, t, payload, to in self.sent if t == kind]


def webhook(event: str, room: str, identity: str, name: str = "", sid: str = "") -> api.WebhookEvent:
    """A LiveKit webhook as `WebhookReceiver` hands it over."""
    participant = api.ParticipantInfo(identity=identity, name=name, sid=sid)
    return api.WebhookEvent(event=event, room=api.Room(name=room), participant=participant)


async def join_lobby(presence, rooms: RoomsDouble, identity: str, name: str = "") -> None:
    """An agent's browser connects to the lobby: LiveKit has it, and says so in a webhook."""
    rooms.members[LOBBY][identity] = name or identity
    await presence.on_livekit_event(webhook("participant_joined", LOBBY, identity, name or identity))


async def leave_lobby(presence, rooms: RoomsDouble, identity: str) -> None:
    rooms.members[LOBBY].pop(identity, None)
    await presence.on_livekit_event(webhook("participant_left", LOBBY, identity))
