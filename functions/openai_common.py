"""Shared helpers for the OpenAI-compatible providers (transcription, summarization, speech).

The SDK is imported lazily, the client is built from `Settings` (never from the
environment), and SDK errors are converted to the project's error tree here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from functions.errors import ConfigError, ProviderError, ProviderTimeout

if TYPE_CHECKING:
    from functions.settings import Settings

# Local OpenAI-compatible servers (Ollama, vLLM, llama.cpp) ignore the key, but the SDK wants one.
_PLACEHOLDER_KEY = "sk-local-no-key"


class OpenAIClientHolder:
    """Builds one `openai.OpenAI` client on first use (thread-safe) and reuses it."""

    def __init__(self, settings: Settings, *, timeout_s: float | None = None) -> None:
        if not settings.openai_configured:
            raise ConfigError("OpenAI is not configured: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")
        self._settings = settings
        self._timeout_s = timeout_s if timeout_s is not None else settings.llm_timeout_s
        self._client: Any = None
        self._lock = threading.Lock()

    def warm(self) -> OpenAIClientHolder:
        """Build the client now (importing the SDK takes ~2 s), so the first request's timeout only
        measures the request. No network is touched."""
        self.get()
        return self

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import openai

                    key = self._settings.openai_api_key.get_secret_value() or _PLACEHOLDER_KEY
                    self._client = openai.OpenAI(
                        api_key=key,
                        base_url=self._settings.openai_base_url or None,
                        timeout=self._timeout_s,
                        max_retries=0,  # providers do not retry; the orchestrator decides
                    )
        return self._client


def convert_openai_error(e: BaseException, what: str) -> ProviderError:
    """Map an SDK exception to ProviderTimeout / ProviderError with a readable message."""
    import openai

    if isinstance(e, openai.APITimeoutError):
        return ProviderTimeout(f"{what}: OpenAI request timed out")
    if isinstance(e, openai.APIStatusError):
        retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
        return ProviderError(f"{what}: OpenAI returned HTTP {e.status_code}: {_short(e)}", retryable=retryable)
    if isinstance(e, openai.APIConnectionError):
        return ProviderError(f"{what}: cannot reach the OpenAI endpoint: {_short(e)}", retryable=True)
    return ProviderError(f"{what}: {type(e).__name__}: {_short(e)}")


def _short(e: BaseException, limit: int = 200) -> str:
    s = str(e).replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"
