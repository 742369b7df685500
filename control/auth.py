"""Who is asking: agent sign-in and caller tickets, shared by the UI and the HTTP API.

- Agents, in one of three modes (`Auth.mode`):
  - `per-agent` (AGENTS set): each agent has its own secret, sent as the passcode (UI) or as
    `X-API-Key` (API). The identity is the one the secret belongs to; claiming another is refused.
  - `shared` (AGENT_PASSCODE or API_KEY set, no AGENTS): one secret for every agent. It keeps
    strangers out but cannot tell one agent from another; the app says so at startup.
  - `open` (nothing set, local development): agents are whoever they say they are, loudly logged.
- A caller gets a ticket when their call is created: an HMAC of the call id and caller
  identity under a server secret. The ticket is the caller's only credential, and it
  names exactly one call, so a caller can never reach someone else's call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

from functions.errors import Forbidden
from functions.settings import Settings


class AuthMode(StrEnum):
    per_agent = "per-agent"
    shared = "shared"
    open = "open"


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._agents = settings.agent_credentials()  # identity → sha256 hex of its secret
        self._passcode = settings.agent_passcode.get_secret_value()
        self._api_key = settings.api_key.get_secret_value()
        # Tickets stay valid across restarts when a LiveKit secret is configured; the
        # embedded server's keys are fresh per run, and so are its calls' tickets.
        base = settings.livekit_api_secret.get_secret_value() or secrets.token_hex(32)
        self._ticket_key = hashlib.sha256(b"caller-ticket:" + base.encode()).digest()

    @property
    def mode(self) -> AuthMode:
        if self._agents:
            return AuthMode.per_agent
        return AuthMode.shared if (self._passcode or self._api_key) else AuthMode.open

    @property
    def open_mode(self) -> bool:
        """No credential configured at all: local development only."""
        return self.mode is AuthMode.open

    def startup_warning(self) -> str | None:
        """What the app logs at start about how agents are told apart, when they are not."""
        if self.mode is AuthMode.open:
            return "AGENTS, AGENT_PASSCODE and API_KEY are unset: agents are not authenticated (local use only)"
        if self.mode is AuthMode.shared:
            return (
                "agents share one credential (AGENT_PASSCODE/API_KEY): anyone who has it can act as any agent; "
                "set AGENTS to give each agent its own"
            )
        return None

    def check_agent(self, identity: str, *, passcode: str | None = None, api_key: str | None = None) -> None:
        """`identity` may act as an agent with this credential, or Forbidden (the same answer for
        an unknown identity and a wrong secret: nothing tells a guesser which agents exist)."""
        if self.mode is AuthMode.open:
            return
        if self.mode is AuthMode.per_agent:
            expected = self._agents.get(identity, "")
            for given in (passcode, api_key):
                if given and expected and hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), expected):
                    return
            raise Forbidden(f"wrong credential for agent '{identity}' (each agent signs in with its own)")
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
