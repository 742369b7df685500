"""An audio track that is in its room only while it has something to say.

A published audio track costs its job the encoder even when no frame is pushed: WebRTC's capture
thread feeds the Opus encoder silence every 10 ms. Measured here (`livekit` 1.1.21, one process,
10 rooms, 10 s): 2.6 % of a core per room with a published silent track (1.6 % of it in
`AudioEncoderQueue`), 0.3 % per room with nothing published. A call spends most of its life off
hold and a consult most of its life without B speaking to the briefing, so the jobs publish their
track when they play and take it out when they stop: at 50 calls that is more than a core.
"""

from __future__ import annotations

import asyncio
import logging

from livekit import rtc

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 10.0  # a room that never answers must not hold up the job for ever


class OnDemandTrack:
    """Publishes `source` as a microphone track named `name` on `publish()` and unpublishes it on
    `unpublish()`; both are idempotent and serialized, so a hold that ends while its track is still
    being published leaves no track behind."""

    def __init__(self, room: rtc.Room, name: str, source: rtc.AudioSource) -> None:
        self.room = room
        self.name = name
        self.source = source
        self._sid: str | None = None
        self._lock = asyncio.Lock()

    async def publish(self) -> None:
        # Shielded: a play that is cancelled meanwhile still leaves the track's state known.
        await asyncio.shield(self._publish())

    async def _publish(self) -> None:
        async with self._lock:
            if self._sid is not None:
                return
            track = rtc.LocalAudioTrack.create_audio_track(self.name, self.source)
            opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            pub = await asyncio.wait_for(self.room.local_participant.publish_track(track, opts), PUBLISH_TIMEOUT_S)
            self._sid = pub.sid

    async def unpublish(self) -> None:
        await asyncio.shield(self._unpublish())

    async def _unpublish(self) -> None:
        async with self._lock:
            sid, self._sid = self._sid, None
            if sid is None:
                return
            self.source.clear_queue()
            try:
                await asyncio.wait_for(self.room.local_participant.unpublish_track(sid), PUBLISH_TIMEOUT_S)
            except Exception as e:  # the room is going away: nothing is left to take out
                log.info("%s: %s not unpublished: %s", self.room.name, self.name, e)
