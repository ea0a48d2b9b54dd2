"""gwfollow: gravitational-wave follow-up on IVOA Multi-Order Coverage maps.

The data flow, one module per step: alert -> :mod:`gwfollow.skymap`
(reading) -> :mod:`gwfollow.moc` (credible regions, space-time MOCs) ->
coverage -> ranking -> reports / REST / storage.  The numba kernels live in
:mod:`gwfollow.kernels`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import GwfollowError
from .moc import (
    credible_moc,
    credible_mocs,
    event_stmoc,
    moc_area,
    probability_in_moc,
    write_moc,
)
from .skymap import SkyMap, SkyMapMeta, read_skymap, write_skymap

try:
    __version__ = version("gwfollow")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

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
