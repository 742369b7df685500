"""Offline models loaded once per process and shared by every provider that asks for them.

A Whisper model is ~150 MB and seconds to load, a piper voice allocates its ONNX graph on first use:
a worker's jobs and the model host would each pay that again without a shared cache. Providers take a
`ModelCache` by construction (default: `PROCESS_MODELS`, the process's own), so a test can give one of
its own and observe what was loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    """Thread-safe: two providers asking for the same key at once load it once."""

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was actually loaded (not found here)

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model for `key`, loading it with `load()` the first time (a failed load is not kept)."""
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:  # one load at a time: two at once would double the memory for nothing
            model = self._models.get(key)
            if model is None:
                model = load()
                self._models[key] = model
                self.loads += 1
        return model

    def loaded(self) -> list[Any]:
        """The models loaded so far, oldest first."""
        with self._lock:
            return list(self._models.values())


PROCESS_MODELS = ModelCache()
