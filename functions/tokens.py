"""LiveKit access tokens with least-privilege grants per role.

`mint_token` turns an *already authorized* `TokenRequest` into a short-lived JWT.
Who may ask for which room is decided by the orchestrator (`control.transfer`).

Grants by role:
- caller:  join its own call room; publish the microphone only; subscribe; no data publishing.
- agent:   join one room (a call room it is on, a consult room it is part of, or the
           agents' lobby where `can_publish=False` makes it receive-only); microphone only.
- service: the server's own participants (hold music, briefing, transcriber); may be hidden
           and subscribe-only.
"""

from __future__ import annotations

import time
from datetime import timedelta

from livekit import api

from functions.errors import ConfigError
from functions.models import Role, TokenRequest, TokenResponse
from functions.settings import Settings

MIC_ONLY = ["microphone"]


def _grants(req: TokenRequest) -> api.VideoGrants:
    """One room, microphone only, whatever the role; roles differ in data and visibility."""
    return api.VideoGrants(
        room_join=True,
        room=req.room,
        can_publish=req.can_publish,
        can_publish_sources=MIC_ONLY,
        can_subscribe=req.can_subscribe,  # False only for A rejoining its call room during the hold
        # Callers never send data; a receive-only agent (the lobby) neither.
        can_publish_data=req.role is Role.service or (req.role is Role.agent and req.can_publish),
        can_update_own_metadata=False,
        hidden=(req.hidden or None) if req.role is Role.service else None,
    )


def mint_token(req: TokenRequest, settings: Settings) -> TokenResponse:
    """Sign a token for exactly one room. TTL: the request's, capped by settings."""
    secret = settings.livekit_api_secret.get_secret_value()
    if not settings.livekit_api_key or not secret:
        raise ConfigError("LIVEKIT_API_KEY / LIVEKIT_API_SECRET are not set (and no embedded server is running)")
    ttl = min(req.ttl_s or settings.token_ttl_s, settings.token_ttl_s)
    token = (
        api.AccessToken(settings.livekit_api_key, secret)
        .with_identity(req.identity)
        .with_name(req.name or req.identity)
        .with_kind("standard")
        .with_attributes({"role": req.role.value})
        .with_grants(_grants(req))
        .with_ttl(timedelta(seconds=ttl))
        .to_jwt()
    )
    return TokenResponse(
        token=token, url=settings.livekit_url, room=req.room, identity=req.identity, expires_at=time.time() + ttl
    )
