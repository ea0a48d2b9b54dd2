"""Downloading sky maps named by VOEvents (aiohttp).

Transient failures (connection errors, time-outs, HTTP 429 and 5xx) are
retried with exponential backoff; permanent ones (other 4xx, a body larger
than the limit) are not.  Every failure is a :class:`~gwfollow.errors.FetchError`
carrying the URL and the HTTP status.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

from gwfollow.config import FetchConfig
from gwfollow.errors import FetchError


async def fetch_bytes(url: str, config: FetchConfig, session: aiohttp.ClientSession | None = None) -> bytes:
    """GET ``url`` with retries; ``file://`` URLs and bare paths are read locally.

    Parameters
    ----------
    url : str
    config : FetchConfig
        ``timeout_s`` per attempt, ``retries`` after the first attempt,
        ``backoff_s`` doubled each retry, ``max_mib`` size limit.
    session : aiohttp.ClientSession, optional
        Reused when given.
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise FetchError(f"cannot read ({exc.strerror})", url=url, transient=False) from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme {parsed.scheme!r}", url=url, transient=False)
    limit = int(config.max_mib * 2**20)
    own = session is None
    sess = session or aiohttp.ClientSession()
    try:
        attempt = 0
        while True:
            try:
                return await _get_once(sess, url, config.timeout_s, limit)
            except FetchError as exc:
                if not exc.transient or attempt >= config.retries:
                    raise
            attempt += 1
            await asyncio.sleep(config.backoff_s * 2 ** (attempt - 1))
    finally:
        if own:
            await sess.close()


async def _get_once(sess: aiohttp.ClientSession, url: str, timeout_s: float, limit: int) -> bytes:
    try:
        async with sess.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status >= 400:
                transient = resp.status >= 500 or resp.status == 429
                raise FetchError(f"HTTP {resp.status} {resp.reason}", url=url, status=resp.status,
                                 transient=transient)
            if resp.content_length is not None and resp.content_length > limit:
                raise FetchError(f"{resp.content_length} bytes is over the {limit // 2**20} MiB limit",
                                 url=url, status=resp.status, transient=False,
                                 hint="raise fetch.max_mib if this sky map is genuine")
            chunks = []
            total = 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > limit:
                    raise FetchError(f"body is over the {limit // 2**20} MiB limit", url=url,
                                     status=resp.status, transient=False)
                chunks.append(chunk)
            return b"".join(chunks)
    except asyncio.TimeoutError:
        raise FetchError(f"no complete answer within {timeout_s:g} s", url=url) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"connection failed ({exc})", url=url) from None
