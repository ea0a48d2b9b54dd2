"""The lean path of a repeated GET: a cached response answered before the other middleware runs.

Observatories poll the same few URLs (a target list, a MOC) many times a
second between alerts.  :func:`gwfollow.service.caching.cached` keeps, with
each response body, its ETag and every header it was sent with (security
headers included); this middleware, first in the chain, answers a GET whose
path and query are in the cache from that entry alone: no routing of
middleware, no hashing, no date formatting, no store access.  Anything it is
not sure about goes the ordinary way: requests with ``Origin`` (CORS) or
``If-Modified-Since``, and every request when reads need a token
(``service.read_open = false``).
"""

from __future__ import annotations

from aiohttp import web

from gwfollow.service.keys import CONFIG, RESPONSE_CACHE

#: Length of a cache entry that carries its prepared headers (see :func:`gwfollow.service.caching.cached`).
PREPARED = 6


def etag_matches(etag: str, if_none_match: str) -> bool:
    """RFC 9110 13.1.2 weak comparison of ``If-None-Match`` with a strong ETag.

    Examples
    --------
    >>> etag_matches('"abc"', 'W/"abc", "def"'), etag_matches('"abc"', '"def"'), etag_matches('"abc"', "*")
    (True, False, True)
    """
    if if_none_match.strip() == "*":
        return True
    return etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]


@web.middleware
async def cached_get(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Answer a cached GET at once; everything else goes to ``handler`` (the rest of the chain)."""
    if request.method != "GET":
        return await handler(request)
    h = request.headers
    if "Origin" in h or "If-Modified-Since" in h or not request.app[CONFIG].service.read_open:
        return await handler(request)
    hit = request.app[RESPONSE_CACHE].get(request.path_qs)
    if hit is None or len(hit) != PREPARED:
        return await handler(request)
    body, _, _, _, etag, headers = hit
    inm = h.get("If-None-Match")
    if inm is not None and etag_matches(etag, inm):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)
