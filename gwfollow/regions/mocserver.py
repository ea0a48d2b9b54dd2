"""The CDS MOCServer: a collection's coverage by its ID, cached on disk.

:func:`coverage_from_mocserver` (and its async form) asks the MOCServer for
one collection's S-MOC, T-MOC or ST-MOC as FITS (:func:`mocserver_query`),
keeps the answer in a cache directory (:func:`mocserver_cache_path`, one file
per query, replaced atomically) and reads it as a
:class:`~gwfollow.regions.coverage.Coverage`.  Offline, only the cached copy is used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from gwfollow.config import packaged_defaults
from gwfollow.errors import CoverageError, FetchError
from gwfollow.ingest.fetch import fetch_bytes
from gwfollow.regions.coverage import KINDS, Coverage, coverage_from_bytes
from gwfollow.regions.mocio import sniff_moc_format

log = logging.getLogger("gwfollow.regions.coverage")  # logger names are subsystems, not modules

MOCSERVER_URL = "https://alasky.cds.unistra.fr/MocServer/query"

_MOCSERVER_GET = {"space": "moc", "time": "tmoc", "spacetime": "stmoc"}


def mocserver_query(identifier: str, kind: str = "space", order: int | str | None = None) -> dict[str, str]:
    """Query parameters that ask the CDS MOCServer for one collection's MOC as FITS.

    ``ID`` selects the collection (an ``ivo://`` prefix is dropped: the
    MOCServer's IDs are ``CDS/P/SDSS9/r``, ``CDS/V/147``...), ``get`` the
    kind (``moc``, ``tmoc``, ``stmoc``), ``fmt=fits`` the serialisation and
    ``order`` the resolution (``max`` when not given, as astroquery does).
    """
    if kind not in KINDS:
        raise CoverageError(f"kind {kind!r} is not one of {', '.join(KINDS)}", source=identifier)
    ident = identifier.strip()
    if ident.lower().startswith("ivo://"):
        ident = ident[len("ivo://"):]
    if not ident or any(c in ident for c in "*,&|!()\n\r\t "):
        raise CoverageError(
            "not a single MOCServer ID", source=identifier or "<empty>",
            hint="give one collection ID such as CDS/P/SDSS9/r (no wildcards or lists)",
        )
    return {"ID": ident, "get": _MOCSERVER_GET[kind], "fmt": "fits",
            "order": "max" if order is None else str(order), "casesensitive": "true"}


def mocserver_cache_path(cache_dir: str | os.PathLike[str], identifier: str, kind: str = "space",
                         order: int | str | None = None) -> Path:
    """Where the FITS answer for ``identifier`` is cached (one file per query)."""
    q = mocserver_query(identifier, kind, order)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", q["ID"]).strip("_")[:80]
    digest = hashlib.sha256(json.dumps(q, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"mocserver-{slug}-{q['get']}-{q['order']}-{digest}.fits"


async def coverage_from_mocserver_async(
    identifier: str, cache_dir: str | os.PathLike[str], *, base_url: str = MOCSERVER_URL,
    timeout_s: float = 20.0, offline: bool = False, kind: str = "space",
    order: int | str | None = None, refresh: bool = False, retries: int = 1,
    name: str | None = None, max_mib: float = 512.0,
) -> Coverage:
    """A collection's coverage from the CDS MOCServer, cached on disk.

    Parameters
    ----------
    identifier : str
        MOCServer collection ID (``CDS/P/SDSS9/r``; ``ivo://`` is accepted).
    cache_dir : path-like
        Directory of the cached FITS answers (created when needed).
    base_url : str
        The MOCServer query endpoint.
    timeout_s : float
        Time limit of each HTTP attempt; with ``retries`` the call is
        bounded by about ``(retries + 1) * timeout_s`` plus backoff.
    offline : bool
        Never use the network: the cached copy or an error.
    kind : {"space", "time", "spacetime"}
        Which MOC to ask for (``get=moc``, ``tmoc``, ``stmoc``).
    order : int or str, optional
        ``order`` parameter (``"max"`` by default).
    refresh : bool
        Download even when a cached copy exists (the copy is used if the
        download fails).
    retries : int
        Retries of transient failures (time-outs, 5xx, 429).
    name : str, optional
        The coverage's name (the identifier by default).
    max_mib : float
        Largest answer accepted.

    Raises
    ------
    CoverageError
        Offline or failed download without a cached copy (the
        :class:`~gwfollow.errors.FetchError`, with URL and status, is the
        ``__cause__``), or an answer that is not a non-empty MOC.
    """

    params = mocserver_query(identifier, kind, order)
    url = f"{base_url}?{urlencode(params)}"
    cache = mocserver_cache_path(cache_dir, identifier, kind, order)
    label = name or identifier
    if cache.is_file() and (offline or not refresh):
        try:
            return await asyncio.to_thread(_load_cached, cache, label, kind, url)
        except CoverageError as exc:
            if offline:
                raise CoverageError(f"offline and the cached copy {cache} is unreadable ({exc.reason})",
                                    source=identifier, hint="delete it and run once online") from exc
            log.warning("%s: cached copy %s is unreadable (%s); downloading again", identifier, cache, exc)
    if offline:
        raise CoverageError(f"offline and no cached copy at {cache}", source=identifier,
                            hint="run once online, or copy the MOC FITS file there")
    # The MOCServer URL is the operator's configuration, not alert content: its
    # host is trusted whatever its address.
    config = dataclasses.replace(packaged_defaults().fetch, timeout_s=timeout_s, retries=retries,
                                 backoff_s=min(1.0, timeout_s / 4), max_mib=max_mib,
                                 total_s=timeout_s * (retries + 1) + 60.0,
                                 allowed_hosts=(urlparse(base_url).hostname or "",),
                                 allowed_networks=("0.0.0.0/0", "::/0"))
    try:
        raw = await fetch_bytes(url, config)
    except FetchError as exc:
        if cache.is_file() and refresh:
            log.warning("%s: MOCServer download failed (%s); using the cached copy %s", identifier, exc, cache)
            return await asyncio.to_thread(_load_cached, cache, label, kind, url)
        raise CoverageError(f"MOCServer download failed and no cached copy: {exc}", source=identifier,
                            hint="check the network or use offline mode with a cached copy") from exc
    return await asyncio.to_thread(_store_and_load, raw, cache, label, kind, url)


def _load_cached(cache: Path, name: str, kind: str, url: str) -> Coverage:
    raw = cache.read_bytes()
    return coverage_from_bytes(raw, cache, name, kind, "auto", source=url)


def _store_and_load(raw: bytes, cache: Path, name: str, kind: str, url: str) -> Coverage:
    if sniff_moc_format(raw) not in ("fits", "fits.gz"):
        snippet = raw[:80].decode("utf-8", "replace").strip()
        raise CoverageError(f"the MOCServer answer is not a FITS MOC (starts {snippet!r})", source=url,
                            hint="check the identifier")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(raw)
    try:
        cov = coverage_from_bytes(raw, tmp, name, kind, "auto", source=url)
        data = cov.space_ranges if cov.kind != "time" else cov.time_ranges
        if data is None or data.shape[0] == 0:
            raise CoverageError("the MOCServer answered with an empty MOC", source=url,
                                hint="unknown IDs give empty MOCs; check the identifier")
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)
    return cov


def coverage_from_mocserver(
    identifier: str, cache_dir: str | os.PathLike[str], *, base_url: str = MOCSERVER_URL,
    timeout_s: float = 20.0, offline: bool = False, **kwargs: Any,
) -> Coverage:
    """Blocking form of :func:`coverage_from_mocserver_async` (same parameters).

    Must not be called from a running event loop: await the async form there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise CoverageError("called from a running event loop", source=identifier,
                            hint="await coverage_from_mocserver_async(...) instead")
    return asyncio.run(coverage_from_mocserver_async(
        identifier, cache_dir, base_url=base_url, timeout_s=timeout_s, offline=offline, **kwargs))
