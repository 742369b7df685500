"""A provider call under a hard deadline: what the LLM summarizer and the LLM answerer fall back from.

The call runs in a thread pool (the caller's, injected, so a test or the caller bounds it); past the
deadline the caller goes on without it (the thread ends when the SDK's own timeout ends it), and any
failure comes back as one `ServiceError` for the caller to record and fall back on."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from functions.errors import ProviderError, ProviderTimeout, ServiceError

T = TypeVar("T")


def within(pool: ThreadPoolExecutor, timeout_s: float, what: str, name: str, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in `pool`, waited for at most `timeout_s`. Raises `ProviderTimeout` past it, the
    provider's own `ServiceError`, or `ProviderError` for anything else (`what`: the function, e.g.
    "summary"; `name`: the provider's)."""
    future = pool.submit(fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout as e:
        future.cancel()
        raise ProviderTimeout(f"{what}: {name} took longer than {timeout_s}s") from e
    except ServiceError:
        raise
    except Exception as e:
        raise ProviderError(f"{what}: {type(e).__name__}: {e}") from e
