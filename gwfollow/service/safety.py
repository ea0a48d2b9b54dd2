"""Response headers that keep untrusted content inert in a browser.

Every page the service produces gets a ``Content-Security-Policy`` that
allows nothing but same-origin images and inline styles (no script runs,
whatever a page holds), ``X-Content-Type-Options: nosniff`` so a product is
never sniffed into HTML, and attachment names are built so that no
identifier can break the ``Content-Disposition`` header (RFC 6266, with the
RFC 8187 ``filename*`` form for names that are not plain ASCII).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

#: Reports are self-contained HTML with a same-origin PNG and an inline <style>.
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value that is safe for any file name.

    Examples
    --------
    >>> content_disposition("S241102br-moc-0.9.fits")
    'attachment; filename="S241102br-moc-0.9.fits"'
    >>> content_disposition('a"b\\r\\nc.fits')
    'attachment; filename="a_b__c.fits"; filename*=UTF-8\\'\\'a%22b%0D%0Ac.fits'
    """
    plain = _UNSAFE.sub("_", filename) or "download"
    if plain == filename:
        return f'attachment; filename="{plain}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


@web.middleware
async def security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Add the CSP and ``nosniff`` to every response, errors included."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        _add(exc)
        raise
    _add(resp)
    return resp


def _add(resp: web.StreamResponse) -> None:
    if resp.prepared:
        return
    resp.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
