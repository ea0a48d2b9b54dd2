"""gwfollow: gravitational-wave follow-up on IVOA Multi-Order Coverage maps.

The data flow, one module per step: alert -> :mod:`gwfollow.skymaps.skymap`
(reading) -> :mod:`gwfollow.regions.moc` (credible regions, space-time MOCs) ->
coverage -> ranking -> reports / REST / storage.  The numba kernels live in
:mod:`gwfollow.kernels`.
"""

from __future__ import annotations

from gwfollow.errors import GwfollowError
from gwfollow.regions.moc import (
    credible_moc,
    credible_mocs,
    event_stmoc,
    moc_area,
    probability_in_moc,
    write_moc,
)
from gwfollow.skymaps.skymap import SkyMap, SkyMapMeta, read_skymap, write_skymap
from gwfollow.version import __version__


__all__ = [
    "GwfollowError",
    "SkyMap",
    "SkyMapMeta",
    "credible_moc",
    "credible_mocs",
    "event_stmoc",
    "moc_area",
    "probability_in_moc",
    "read_skymap",
    "write_moc",
    "write_skymap",
    "__version__",
]
