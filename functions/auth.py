"""Who is asking: agent sign-in and caller tickets, shared by the UI and the HTTP API.

- Agents sign in with the shared passcode (AGENT_PASSCODE) or use the API key (API_KEY).
  With neither set (local development), agents are trusted as whoever they say they are,
  and the app logs a warning at startup.
- A caller gets a ticket when their call is created: an HMAC of the call id and caller
  identity under a server secret. The ticket is the caller's only credential, and it
  names exactly one call, so a caller can never reach someone else's call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from functions.errors import Forbidden
from functions.settings import Settings


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._passcode = settings.agent_passcode.get_secret_value()
        self._api_key = settings.api_key.get_secret_value()
        # Tickets stay valid across restarts when a LiveKit secret is configured; the
        # embedded server's keys are fresh per run, and so are its calls' tickets.
        base = settings.livekit_api_secret.get_secret_value() or secrets.token_hex(32)
        self._ticket_key = hashlib.sha256(b"caller-ticket:" + base.encode()).digest()

    @property
    def open_mode(self) -> bool:
        """No passcode and no API key configured: local development only."""
        return not (self._passcode or self._api_key)

    def check_agent(self, *, passcode: str | None = None, api_key: str | None = None) -> None:
        if self.open_mode:
            return
        if api_key and self._api_key and hmac.compare_digest(api_key, self._api_key):
            return
        if passcode and self._passcode and hmac.compare_digest(passcode, self._passcode):
            return
        raise Forbidden("agent credential missing or wrong (set the passcode or X-API-Key)")

    def caller_ticket(self, call_id: str, caller_identity: str) -> str:
        msg = f"{call_id}:{caller_identity}".encode()
        return hmac.new(self._ticket_key, msg, hashlib.sha256).hexdigest()

    def check_caller(self, call_id: str, caller_identity: str, ticket: str) -> None:
        if not hmac.compare_digest(self.caller_ticket(call_id, caller_identity), ticket or ""):
            raise Forbidden("this caller ticket is not valid for this call")
