"""Products computed on request rather than by the pipeline: a credible-region
MOC at a level that is not configured (``/moc?level=0.95``).

Each is computed once per (sky map, level, boundary) and kept in a bounded
in-process cache keyed by the sky map's SHA-256 (the map's bytes, which come
from the store, are not kept).  The file is written by the same
:func:`~gwfollow.regions.mocio.credible_moc_fits_bytes` as the pipeline's MOCs,
so a MOC at any level carries the same provenance keywords.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from gwfollow.config import SkyMapConfig
from gwfollow.regions.moc import credible_ranges
from gwfollow.regions.mocio import credible_moc_fits_bytes
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.version import __version__

_MAX_ENTRIES = 256
_cache: OrderedDict[tuple[str, float, str], bytes] = OrderedDict()
_lock = threading.Lock()


def moc_fits_at_level(sha256: str, skymap_bytes: bytes, level: float, boundary: str,
                      config: SkyMapConfig) -> bytes:
    """MOC 2.0 FITS bytes of the credible region at ``level`` (computed once, then cached).

    Parameters
    ----------
    sha256 : str
        The sky map's SHA-256 (the cache key with ``level`` and ``boundary``).
    skymap_bytes : bytes
        The sky map as stored.
    level : float
        Credible level in (0, 1].
    boundary : {"split", "exclude", "include"}
    config : SkyMapConfig
    """
    key = (sha256, float(level), boundary)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    sm = read_skymap(skymap_bytes, config=config)
    r = credible_ranges(sm, [float(level)], boundary)[0]
    data = credible_moc_fits_bytes(r, sm.meta.moc_order, object_id=sm.meta.object_id, level=float(level),
                                   boundary=boundary, skymap_sha256=sm.sha256, version=__version__)
    with _lock:
        _cache[key] = data
        while len(_cache) > _MAX_ENTRIES:
            _cache.popitem(last=False)
    return data
