"""Polling-friendly responses: strong ETags, Last-Modified, 304, and the response cache.

Every GET answers with a strong ``ETag`` (the SHA-256 of the body) and, for
event resources, ``Last-Modified``; ``If-None-Match`` / ``If-Modified-Since``
give ``304 Not Modified``.  Repeated GETs are served from memory until the
pipeline stores something new.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import weakref
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web

from gwfollow.service.fastpath import etag_matches
from gwfollow.service.keys import PIPELINE, RESPONSE_CACHE
from gwfollow.service.middleware import require_read
from gwfollow.service.safety import CONTENT_SECURITY_POLICY


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def conditional(request: web.Request, body: bytes, content_type: str, *, last_modified: str | None = None,
                status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A response with ETag / Last-Modified that honours conditional requests."""
    tag = _etag(body)
    h = {"ETag": tag, "Cache-Control": "no-cache"}
    lm = None
    if last_modified:
        lm = datetime.fromisoformat(last_modified).astimezone(timezone.utc).replace(microsecond=0)
        h["Last-Modified"] = format_datetime(lm, usegmt=True)
    h.update(headers or {})
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        # Weak comparison (RFC 9110, 13.1.2): a proxy that gzips turns the tag into W/"...".
        if etag_matches(tag, inm):
            return web.Response(status=304, headers=h)
    elif lm is not None and "If-Modified-Since" in request.headers:
        try:
            since = parsedate_to_datetime(request.headers["If-Modified-Since"])
            if lm <= since:
                return web.Response(status=304, headers=h)
        except (TypeError, ValueError):
            pass
    resp = web.Response(body=body, status=status, content_type=content_type.split(";")[0], headers=h)
    resp._gwfollow_lm = last_modified  # type: ignore[attr-defined]  (for the response cache)
    return resp


def cached(handler):  # type: ignore[no-untyped-def]
    """Serve repeated GETs from memory until the pipeline stores something new.

    The key is the path and query; the cache is invalidated by the pipeline
    on the database thread right after each commit (see :func:`install_cache`),
    so a poller never sees a product older than what the store holds.
    Authorisation is checked before the cache is consulted.
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        require_read(request)
        cache = request.app[RESPONSE_CACHE]
        generation = cache.generation
        key = request.path_qs
        hit = cache.get(key)
        if hit is not None:
            body, ctype, lm, headers = hit[:4]
            return conditional(request, body, ctype, last_modified=lm, headers=headers)
        # One computation per URL at a time: after an alert empties the cache, fifty
        # pollers of the same list wait for the first one's answer instead of each
        # converting it again (a stampede of CPU-bound threads in the event loop's process).
        flights = _IN_FLIGHT.setdefault(cache, {})
        leader = flights.get((key, generation))
        if leader is not None:
            await asyncio.shield(leader)
            hit = cache.get(key)
            if hit is not None:
                body, ctype, lm, headers = hit[:4]
                return conditional(request, body, ctype, last_modified=lm, headers=headers)
            return await handler(request)  # the first one's answer was not cacheable
        done = asyncio.get_running_loop().create_future()
        flights[(key, generation)] = done
        try:
            resp = await handler(request)
            _keep(cache, key, resp, generation)
        finally:
            flights.pop((key, generation), None)
            done.set_result(None)
        return resp

    return wrapper


_IN_FLIGHT: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], asyncio.Future[None]]] = \
    weakref.WeakKeyDictionary()
"""Per response cache: the computations under way, by (path and query, cache generation)."""


def _keep(cache: Any, key: str, resp: web.StreamResponse, generation: int) -> None:
    """Put a 200 response in the cache with what the fast path needs."""
    if resp.status != 200 or not isinstance(resp, web.Response) or resp.body is None:
        return
    lm_hdr = getattr(resp, "_gwfollow_lm", None)
    extra = {k: v for k, v in resp.headers.items() if k == "Content-Disposition"}
    # The headers as sent, for the fast path (gwfollow.service.fastpath): the
    # security headers are added here because their middleware runs after this.
    sent = {k: v for k, v in resp.headers.items() if k != "Content-Length"}
    sent.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    sent.setdefault("X-Content-Type-Options", "nosniff")
    cache.put(key, (bytes(resp.body), resp.content_type, lm_hdr, extra, resp.headers["ETag"], sent),
              generation)


def install_cache(app: web.Application) -> None:
    """Invalidate the response cache whenever the pipeline commits to the store."""
    app[PIPELINE].add_commit_listener(app[RESPONSE_CACHE].invalidate)
