"""In-memory caches of the HTTP API, bounded by bytes with least-recently-used eviction.

:class:`BytesLRU` is the bounded store; :class:`ResponseCache` (GET bodies, emptied
whenever the store changes) is built on it, and so is the report cache of
:mod:`gwfollow.service.reports`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

#: Bytes counted per entry besides its bodies (key, tuple, headers, dict slot).
ENTRY_OVERHEAD = 256


def size_of(value: Any) -> int:
    """Bytes an entry costs: its ``bytes``/``str`` parts (top level or in a tuple) plus a constant."""
    parts = value if isinstance(value, tuple) else (value,)
    return ENTRY_OVERHEAD + sum(len(p) for p in parts if isinstance(p, (bytes, bytearray, memoryview, str)))


class BytesLRU:
    """A thread-safe mapping whose values never total more than ``max_bytes``.

    Past the bound the least recently used entries are evicted; a value larger
    than the bound on its own is not kept at all.

    Parameters
    ----------
    max_bytes : int
        The bound, in bytes, on the sum of :func:`size_of` over the entries.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes={max_bytes} must be >= 0")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.evictions = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any) -> bool:
        """Keep ``value`` under ``key``; False when it is larger than the whole bound."""
        size = size_of(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return False
            while self._entries and self.nbytes + size > self.max_bytes:
                _, (_, freed) = self._entries.popitem(last=False)
                self.nbytes -= freed
                self.evictions += 1
            self._entries[key] = (value, size)
            self.nbytes += size
            return True

    def pop(self, key: Hashable) -> Any:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is None:
                return None
            self.nbytes -= old[1]
            return old[0]

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)


class ResponseCache:
    """Bodies of GET responses by path and query, emptied whenever the store changes.

    :meth:`invalidate` may be called from any thread (the pipeline calls it on the
    database thread right after a commit, before anyone can see the new rows), and
    a response computed from the store *before* an invalidation is never stored
    *after* it: :meth:`put` takes the :attr:`generation` read when the handler
    started and drops the entry if the cache was invalidated since.

    Parameters
    ----------
    max_bytes : int
        Bound on the bodies kept (``service.response_cache_mib``); past it the
        least recently used responses are evicted.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.generation = 0
        self._lru = BytesLRU(max_bytes)
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held now (never more than :attr:`max_bytes`)."""
        return self._lru.nbytes

    def get(self, key: str) -> Any:
        return self._lru.get(key)

    def put(self, key: str, value: Any, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            self._lru.put(key, value)

    def invalidate(self, *_: Any) -> None:
        with self._lock:
            self.generation += 1
            self._lru.clear()

    def __len__(self) -> int:
        return len(self._lru)
