"""LiveKit RoomService and AgentDispatchService, wrapped: rooms, participants, permissions,
data messages, room metadata and job dispatch to the media plane.

The `LiveKitAPI` client must be created inside a running event loop, so it is
built on first use. Every twirp error becomes a `LiveKitError` (or `NotFound`).

Notifications go out through a per-room outbox (`post`): in order within a room, never on the
path of the action that caused them (each send is two RoomService calls, and under load those
took seconds that `initiate` used to wait for), and delivered before the room is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp
from livekit import api

from functions.errors import LiveKitError, NotFound
from functions.events import Notification
from functions.models import TOPIC
from functions.settings import Settings

log = logging.getLogger(__name__)
OUTBOX_LIMIT = 200  # messages waiting for one room; beyond it the oldest are dropped (a stuck room)
FLUSH_S = 2.0  # a room's pending messages get this long before it is deleted or the app stops


def http_url(ws_url: str) -> str:
    return ws_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)


class Rooms:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._api: api.LiveKitAPI | None = None
        self._outbox: dict[str, list[tuple[Notification, list[str] | None]]] = {}  # room → pending, oldest first
        self._senders: dict[str, asyncio.Task] = {}  # room → the task draining its outbox

    @property
    def _lk(self) -> api.LiveKitAPI:
        if self._api is None:
            s = self._settings
            self._api = api.LiveKitAPI(
                http_url(s.livekit_url), s.livekit_api_key, s.livekit_api_secret.get_secret_value()
            )
        return self._api

    @property
    def _room(self) -> api.room_service.RoomService:
        return self._lk.room

    async def aclose(self) -> None:
        await self._flush(list(self._senders.values()))
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def _call(self, what: str, coro):
        try:
            return await coro
        except api.TwirpError as e:
            if e.code == api.TwirpErrorCode.NOT_FOUND:
                raise NotFound(f"{what}: {e.message}") from e
            raise LiveKitError(f"{what}: {e.code} {e.message}", retryable=e.status >= 500) from e
        except (OSError, TimeoutError, aiohttp.ClientError) as e:  # ClientError: e.g. the server hung up mid-request
            raise LiveKitError(f"{what}: LiveKit server unreachable ({e!r})", retryable=True) from e

    # --- rooms -------------------------------------------------------------------------
    async def create_room(
        self,
        name: str,
        *,
        empty_timeout: int = 300,
        departure_timeout: int = 0,
        max_participants: int = 0,
        job: tuple[str, str] | None = None,
    ) -> api.Room:
        """`job` = (agent name, metadata): the room is created with that job dispatched into it.

        A room created without one gets the server's default dispatch (an unnamed agent), whose
        request the server keeps waiting on when no such worker exists (measured with livekit-server
        1.13.5: it delayed the named dispatches of the rooms created after it by seconds)."""
        agents = [api.RoomAgentDispatch(agent_name=job[0], metadata=job[1])] if job else None
        req = api.CreateRoomRequest(
            name=name,
            empty_timeout=empty_timeout,
            departure_timeout=departure_timeout,  # 0: the server's (20 s after the last one left)
            max_participants=max_participants,
            agents=agents,
        )
        return await self._call(f"create room {name}", self._room.create_room(req))

    async def list_rooms(self, names: list[str] | None = None) -> list[api.Room]:
        res = await self._call("list rooms", self._room.list_rooms(api.ListRoomsRequest(names=names or [])))
        return list(res.rooms)

    async def set_metadata(self, name: str, metadata: str) -> None:
        await self._call(
            f"update metadata of {name}",
            self._room.update_room_metadata(api.UpdateRoomMetadataRequest(room=name, metadata=metadata)),
        )

    async def room_exists(self, name: str) -> bool:
        return any(r.name == name for r in await self.list_rooms([name]))

    async def delete_room(self, name: str) -> None:
        """Idempotent. What was posted to the room is sent first (bounded), then the room goes."""
        if sender := self._senders.get(name):
            await self._flush([sender])
        try:
            await self._call(f"delete room {name}", self._room.delete_room(api.DeleteRoomRequest(room=name)))
        except NotFound:
            pass  # already gone: deleting is idempotent

    # --- participants ------------------------------------------------------------------
    async def list_participants(self, room: str) -> list[api.ParticipantInfo]:
        try:
            res = await self._call(
                f"list participants of {room}", self._room.list_participants(api.ListParticipantsRequest(room=room))
            )
        except NotFound:
            return []
        return list(res.participants)

    async def identities(self, room: str) -> set[str]:
        return {p.identity for p in await self.list_participants(room)}

    async def remove_participant(self, room: str, identity: str) -> None:
        try:
            await self._call(
                f"remove {identity} from {room}",
                self._room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity)),
            )
        except NotFound:
            pass  # not there (left already): the goal is reached

    async def set_permissions(self, room: str, identity: str, *, publish: bool, subscribe: bool) -> None:
        """Server-enforced: revoking publish unpublishes the participant's tracks."""
        perm = api.ParticipantPermission(
            can_publish=publish,
            can_subscribe=subscribe,
            can_publish_data=True,
            can_publish_sources=[api.TrackSource.MICROPHONE] if publish else [],
        )
        await self._call(
            f"update permissions of {identity} in {room}",
            self._room.update_participant(api.UpdateParticipantRequest(room=room, identity=identity, permission=perm)),
        )

    # --- media plane jobs ---------------------------------------------------------------
    async def dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        """Ask the server to send a job for `room` to a worker registered as `agent_name`."""
        req = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
        res = await self._call(f"dispatch {agent_name} to {room}", self._lk.agent_dispatch.create_dispatch(req))
        return res.id

    # --- data --------------------------------------------------------------------------
    def post(self, room: str, message: Notification, identities: list[str] | None = None) -> None:
        """Queue a notification for `room` and return at once: sent in order by the room's sender."""
        pending = self._outbox.setdefault(room, [])
        pending.append((message, identities))
        if len(pending) > OUTBOX_LIMIT:
            dropped = pending.pop(0)[0]
            log.warning("outbox of %s full: dropped %s", room, dropped.type)
        if room not in self._senders:
            self._senders[room] = asyncio.ensure_future(self._drain(room))

    async def _drain(self, room: str) -> None:
        try:
            while pending := self._outbox.get(room):
                message, identities = pending.pop(0)
                await self.send(room, message, identities)
        finally:
            self._outbox.pop(room, None)
            self._senders.pop(room, None)

    async def flush(self, room: str) -> None:
        """What was posted to `room` has been sent (bounded by FLUSH_S)."""
        if sender := self._senders.get(room):
            await self._flush([sender])

    async def _flush(self, senders: list[asyncio.Task]) -> None:
        if not senders:
            return
        _done, late = await asyncio.wait(senders, timeout=FLUSH_S)
        for task in late:  # LiveKit is not answering: the notifications are lost, the caller goes on
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send(self, room: str, message: Notification, identities: list[str] | None = None) -> bool:
        """Best effort: a notification that cannot be delivered is logged, never fatal."""
        # livekit-server answers SendData for a room that does not exist only after a 3 s
        # timeout (measured, v1.13.5); asking first costs a millisecond. Nobody is listening
        # in a room that does not exist (e.g. the agents' lobby before any agent signs in).
        try:
            if not await self.room_exists(room):
                log.debug("notification %s to %s skipped: no such room", message.type, room)
                return False
        except LiveKitError as e:
            log.info("notification %s to %s not delivered: %s", message.type, room, e)
            return False
        req = api.SendDataRequest(
            room=room,
            data=json.dumps(message.model_dump(mode="json")).encode(),
            kind=api.DataPacket.Kind.RELIABLE,
            destination_identities=identities or [],
            topic=TOPIC,
        )
        try:
            await self._call(f"send data to {room}", self._room.send_data(req))
            return True
        except (LiveKitError, NotFound) as e:
            log.info("notification %s to %s not delivered: %s", message.type, room, e)
            return False
