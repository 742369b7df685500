"""One error tree for the whole service layer.

Providers convert SDK errors at their boundary (`raise ProviderError(...) from e`);
only the orchestrator decides whether to retry, using `retryable`.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error this project raises on purpose."""

    retryable: bool = False
    status_code: int = 500

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable


class ConfigError(ServiceError):
    """A setting is missing or invalid; the message names the variable."""

    status_code = 500


class InvalidInput(ServiceError):
    """The caller of a function sent something we refuse; nothing was changed."""

    status_code = 422


class NotFound(ServiceError):
    status_code = 404


class Forbidden(ServiceError):
    """The identity asking is not allowed to do this (wrong role, another call)."""

    status_code = 403


class Conflict(ServiceError):
    """The request clashes with the current state (a call already has an open transfer…)."""

    status_code = 409


class IllegalTransition(Conflict):
    """A transfer state change that the state machine does not allow."""


class ProviderError(ServiceError):
    """An external provider (OpenAI, Twilio, Modal, a local model) failed."""

    status_code = 502


class ProviderTimeout(ProviderError):
    retryable = True
    status_code = 504


class StorageUnavailable(ServiceError):
    """The database refused a read or write (read-only file, disk full, locked): nothing was
    changed, and the same request may succeed once it is fixed."""

    retryable = True
    status_code = 503


class LiveKitError(ServiceError):
    """The LiveKit server refused or failed a request."""

    status_code = 502


# --- HTTP-facing conditions (raised by the API layer) ----------------------------------


class Unauthorized(ServiceError):
    """No credential at all (as opposed to a wrong one, which is Forbidden)."""

    status_code = 401


class SessionExpired(Unauthorized):
    """A UI session that is unknown, past its lifetime or ended by a sign-in elsewhere: the browser
    signs in again (it tells this from the answer's `kind`, never from the message's words)."""


class PayloadTooLarge(ServiceError):
    status_code = 413


class NotAvailable(ServiceError):
    """A feature that is not set up on this server (e.g. Twilio)."""

    status_code = 501


class NotReady(ServiceError):
    status_code = 503
