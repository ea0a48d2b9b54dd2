"""The in-memory response cache of the HTTP API, invalidated as the store changes."""

from __future__ import annotations

import threading
from typing import Any


class ResponseCache:
    """Bodies of GET responses by path and query, emptied whenever the store changes.

    :meth:`invalidate` may be called from any thread (the pipeline calls it on the
    database thread right after a commit, before anyone can see the new rows), and
    a response computed from the store *before* an invalidation is never stored
    *after* it: :meth:`put` takes the :attr:`generation` read when the handler
    started and drops the entry if the cache was invalidated since.

    Parameters
    ----------
    max_entries : int
        Past this many entries the cache is emptied (bounded memory).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        return self._entries.get(key)

    def put(self, key: str, value: Any, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = value

    def invalidate(self, *_: Any) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
