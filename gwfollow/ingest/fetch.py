"""Downloading sky maps named by alerts: the URL is untrusted input.

An alert may name any URL, so a fetch follows a policy
(:class:`~gwfollow.config.FetchConfig`):

* only ``http`` and ``https`` URLs whose host is in ``allowed_hosts``;
* every address the host resolves to must be public (not loopback,
  link-local, private, multicast, reserved or unspecified; an IPv4-mapped
  IPv6 address is judged as its IPv4 address) unless it lies in one of
  ``allowed_networks``.  The check runs inside the connector's resolver, so
  the connection is made to the addresses that were checked: a second DNS
  answer cannot slip in between (no DNS-rebinding gap);
* redirects are followed by hand (at most ``max_redirects``), each new
  location checked as the first;
* the body is read as a stream and refused beyond ``max_mib``; it is not
  inflated here (``Content-Encoding`` is left alone), so a compressed body
  counts at its compressed size and is inflated later under the sky-map cap;
* each attempt has ``timeout_s``, all attempts together ``total_s``;
  only transient failures (connection errors, time-outs, HTTP 429 and 5xx)
  are retried, with exponential backoff;
* a local path or ``file://`` URL is read only from inside ``local_dir``
  when an operator configured one (replay of archived VOEvents), and only
  if it is a regular file.

Every failure is a :class:`~gwfollow.errors.FetchError` carrying the URL and
the HTTP status; refusals by the policy are not transient.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import stat
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from gwfollow.config import FetchConfig
from gwfollow.errors import FetchError

_REDIRECTS = (301, 302, 303, 307, 308)
_CHECKED_SESSIONS: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(config: FetchConfig) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in config.allowed_networks)


def address_refusal(address: str, networks: tuple[Network, ...] = ()) -> str | None:
    """Why ``address`` may not be connected to, or None when it may.

    Parameters
    ----------
    address : str
        An IPv4 or IPv6 address (a zone suffix ``%eth0`` is ignored).
    networks : tuple of ip_network
        Networks exempted from the check (configured by the operator).

    Examples
    --------
    >>> address_refusal("127.0.0.1")
    'loopback'
    >>> address_refusal("::ffff:169.254.169.254")
    'link-local'
    >>> address_refusal("131.215.1.1") is None
    True
    """
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in networks):
        return None
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


class CheckedResolver(AbstractResolver):
    """A resolver that refuses host names resolving to a forbidden address.

    aiohttp connects to the addresses this resolver returns, so the address
    checked is the address used.
    """

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self._inner = DefaultResolver()
        self._networks = networks

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            why = address_refusal(info["host"], self._networks)
            if why is not None:
                raise _Refused(f"host {host} resolves to {info['host']}, a {why} address")
        return infos

    async def close(self) -> None:
        await self._inner.close()


class _Refused(OSError):
    """Raised inside the connector; aiohttp wraps OSErrors, we unwrap this one."""


def _check_url(url: str, config: FetchConfig, networks: tuple[Network, ...]) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme {parsed.scheme!r}", url=url, transient=False,
                         hint="sky maps are fetched over http(s) only")
    host = (parsed.hostname or "").lower()
    if not host:
        raise FetchError("URL without a host", url=url, transient=False)
    if host not in {h.lower() for h in config.allowed_hosts}:
        raise FetchError(f"host {host!r} is not in fetch.allowed_hosts", url=url, transient=False,
                         hint="add the host to fetch.allowed_hosts if it is a trusted sky-map server")
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: checked when resolved
    why = address_refusal(str(literal), networks)
    if why is not None:
        raise FetchError(f"{host} is a {why} address", url=url, transient=False,
                         hint="add it to fetch.allowed_networks if it is a trusted server")


async def fetch_bytes(url: str, config: FetchConfig, session: aiohttp.ClientSession | None = None) -> bytes:
    """GET ``url`` under the fetch policy of ``config`` (see the module docstring).

    Parameters
    ----------
    url : str
        An http(s) URL, or a path / ``file://`` URL when ``config.local_dir`` is set.
    config : FetchConfig
        ``timeout_s`` per attempt, ``total_s`` for all, ``retries`` after the
        first attempt, ``backoff_s`` doubled each retry, ``max_mib`` size
        limit, ``allowed_hosts``, ``allowed_networks``, ``max_redirects``,
        ``local_dir``.
    session : aiohttp.ClientSession, optional
        Reused when given; it must have been made by :func:`checked_session`
        (a session with another resolver would skip the address check).

    Raises
    ------
    FetchError
        Refused by the policy (``transient=False``), HTTP error, time-out,
        too large.
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return await asyncio.to_thread(read_local, parsed.path if parsed.scheme == "file" else url, config)
    networks = _networks(config)
    _check_url(url, config, networks)
    if session is not None and session not in _CHECKED_SESSIONS:
        raise FetchError("session is not a checked session", url=url, transient=False,
                         hint="make it with gwfollow.ingest.fetch.checked_session")
    limit = int(config.max_mib * 2**20)
    own = session is None
    sess = session or checked_session(config)
    try:
        async with asyncio.timeout(config.total_s):
            attempt = 0
            while True:
                try:
                    return await _get_following(sess, url, config, networks, limit)
                except FetchError as exc:
                    if not exc.transient or attempt >= config.retries:
                        raise
                attempt += 1
                await asyncio.sleep(config.backoff_s * 2 ** (attempt - 1))
    except TimeoutError:
        raise FetchError(f"no sky map within the total deadline of {config.total_s:g} s", url=url,
                         hint="the server is too slow; fetch.total_s bounds every try") from None
    finally:
        if own:
            await sess.close()


def checked_session(config: FetchConfig) -> aiohttp.ClientSession:
    """A client session whose connector checks every resolved address."""
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(_networks(config)))
    # auto_decompress off: a Content-Encoding bomb stays compressed here and is
    # inflated by the sky-map reader under its cap (gwfollow.skymaps.inflate).
    sess = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                 headers={"Accept-Encoding": "identity"})
    _CHECKED_SESSIONS.add(sess)
    return sess


async def _get_following(sess: aiohttp.ClientSession, url: str, config: FetchConfig,
                         networks: tuple[Network, ...], limit: int) -> bytes:
    current = url
    for _ in range(config.max_redirects + 1):
        result = await _get_once(sess, current, config.timeout_s, limit)
        if isinstance(result, bytes):
            return result
        nxt = urljoin(current, result)
        _check_url(nxt, config, networks)
        current = nxt
    raise FetchError(f"more than {config.max_redirects} redirects", url=url, transient=False)


async def _get_once(sess: aiohttp.ClientSession, url: str, timeout_s: float, limit: int) -> bytes | str:
    """The body, or the ``Location`` of a redirect."""
    try:
        async with sess.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s),
                            allow_redirects=False) as resp:
            if resp.status in _REDIRECTS:
                loc = resp.headers.get("Location")
                if not loc:
                    raise FetchError(f"HTTP {resp.status} without a Location", url=url,
                                     status=resp.status, transient=False)
                return loc
            if resp.status >= 400:
                transient = resp.status >= 500 or resp.status == 429
                raise FetchError(f"HTTP {resp.status} {resp.reason}", url=url, status=resp.status,
                                 transient=transient)
            if resp.content_length is not None and resp.content_length > limit:
                raise FetchError(f"{resp.content_length} bytes is over the {limit / 2**20:g} MiB limit",
                                 url=url, status=resp.status, transient=False,
                                 hint="raise fetch.max_mib if this sky map is genuine")
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                if len(buf) + len(chunk) > limit:
                    raise FetchError(f"body is over the {limit / 2**20:g} MiB limit", url=url,
                                     status=resp.status, transient=False,
                                     hint="raise fetch.max_mib if this sky map is genuine")
                buf += chunk
            return bytes(buf)
    except asyncio.TimeoutError:
        raise FetchError(f"no complete answer within {timeout_s:g} s", url=url) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, _Refused):
            raise FetchError(str(exc.os_error), url=url, transient=False,
                             hint="add the network to fetch.allowed_networks if the server is trusted") from None
        raise FetchError(f"connection failed ({exc})", url=url) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"connection failed ({exc})", url=url) from None


def read_local(path: str, config: FetchConfig) -> bytes:
    """Read a sky map from inside ``config.local_dir`` (a regular file, at most ``max_mib``).

    Raises
    ------
    FetchError
        No ``local_dir`` configured, a path outside it, not a regular file
        (a FIFO or device would block or never end), too large, unreadable.
    """
    if not config.local_dir:
        raise FetchError("local sky-map paths are not read", url=path, transient=False,
                         hint="set fetch.local_dir to the directory of archived sky maps to replay them")
    root = Path(config.local_dir).expanduser().resolve()
    target = Path(path)
    if not target.is_absolute():
        target = root / target
    real = target.resolve()
    if real != root and root not in real.parents:
        raise FetchError(f"{path} is outside fetch.local_dir {root}", url=path, transient=False)
    limit = int(config.max_mib * 2**20)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise FetchError(f"cannot read ({exc.strerror})", url=path, transient=False) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FetchError("not a regular file", url=path, transient=False)
        if st.st_size > limit:
            raise FetchError(f"{st.st_size} bytes is over the {limit / 2**20:g} MiB limit", url=path,
                             transient=False)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FetchError(f"over the {limit / 2**20:g} MiB limit", url=path, transient=False)
    return data
