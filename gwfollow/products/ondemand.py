"""Products computed on request rather than by the pipeline: a credible-region
MOC at a level that is not configured (``/moc?level=0.95``).

Each is computed once per (sky map, level, boundary) and kept in a bounded
in-process cache; the sky map's bytes come from the store.
"""

from __future__ import annotations

import functools

from gwfollow.config import SkyMapConfig
from gwfollow.regions.moc import credible_ranges
from gwfollow.regions.mocio import space_moc_fits_bytes
from gwfollow.skymaps.skymap import read_skymap


@functools.lru_cache(maxsize=256)
def _moc_fits(sha256: str, skymap_bytes: bytes, level: float, boundary: str, config: SkyMapConfig) -> bytes:
    # sha256 is part of the key so two maps never share an entry by accident.
    sm = read_skymap(skymap_bytes, config=config)
    r = credible_ranges(sm, [level], boundary)[0]
    return space_moc_fits_bytes(r, sm.meta.moc_order, extra={"OBJECT": sm.meta.object_id or "", "CREDLEV": level,
                                                             "SKYMAPSH": sm.sha256[:64]})


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
    return _moc_fits(sha256, skymap_bytes, float(level), boundary, config)
