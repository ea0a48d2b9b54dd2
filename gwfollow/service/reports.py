"""Event reports (HTML page and sky plot), rendered once per sky-map revision of an event.

Rendering a report decodes the sky map and draws it (seconds of CPU), so
``GET /api/v1/events/{id}/report`` and ``/report.png`` are served from a
cache keyed by the event's *revision*: its latest sky map, the products made
from it and the event's last update.  A new revision is a new key (rendered
once, the old one dropped); a retracted event answers 410 and its reports are
dropped.  Concurrent requests for a revision not rendered yet wait for one
render.  The cache is bounded by bytes (``service.report_cache_mib``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gwfollow.records import EventRecord
from gwfollow.service.responsecache import BytesLRU
from gwfollow.store import Store

#: (superevent id, latest sky-map id, product ids of that map, event updated_at)
RevisionKey = tuple[str, int | None, tuple[int, ...], str]
#: (HTML bytes, PNG bytes or None)
Rendered = tuple[bytes, bytes | None]


def revision_key(store: Store, ev: EventRecord) -> RevisionKey:
    """What a report of ``ev`` depends on (store reads; cheap: no sky map, no product data)."""
    latest = store.latest_skymap(ev.superevent_id)
    if latest is None:
        return (ev.superevent_id, None, (), ev.updated_at)
    ids = tuple(sorted(p["id"] for p in store.products_of(ev.superevent_id) if p["skymap_id"] == latest["id"]))
    return (ev.superevent_id, int(latest["id"]), ids, ev.updated_at)


class ReportCache:
    """Rendered reports by :data:`RevisionKey`, one render per key.

    Parameters
    ----------
    max_bytes : int
        Bound on the pages and plots kept (least recently used evicted first).

    Attributes
    ----------
    renders : int
        How many reports were rendered (a repeated request renders nothing).
    """

    def __init__(self, max_bytes: int) -> None:
        self._lru = BytesLRU(max_bytes)
        self._inflight: dict[RevisionKey, asyncio.Future[Rendered]] = {}
        self.renders = 0

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    async def get(self, key: RevisionKey, render: Callable[[], Awaitable[Rendered]]) -> Rendered:
        """The report of ``key``, rendered by ``await render()`` only when not cached or being rendered.

        The render runs as a task of its own: a client that goes away does not
        cancel it for the others waiting on it.
        """
        hit = self._lru.get(key)
        if hit is not None:
            return hit
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._render(key, render))
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _render(self, key: RevisionKey, render: Callable[[], Awaitable[Rendered]]) -> Rendered:
        try:
            self.renders += 1
            value = await render()
        finally:
            del self._inflight[key]
        self.drop_event(key[0])  # older revisions of the event are of no use any more
        self._lru.put(key, value)
        return value

    def revisions(self, superevent_id: str) -> list[RevisionKey]:
        """The revisions of an event whose report is held now."""
        return [k for k in self._lru.keys() if isinstance(k, tuple) and k[0] == superevent_id]

    def drop_event(self, superevent_id: str) -> None:
        """Forget every report of an event (a new revision, a retraction)."""
        for k in self.revisions(superevent_id):
            self._lru.pop(k)
