"""gwfollow: gravitational-wave follow-up on IVOA Multi-Order Coverage maps.

The data flow, one package per stage (see the README's Architecture section):
:mod:`gwfollow.ingest` (alerts) -> :mod:`gwfollow.skymaps` (reading) ->
:mod:`gwfollow.regions` (credible regions, MOCs, coverages) ->
:mod:`gwfollow.targets` (galaxies, fields, sites) -> :mod:`gwfollow.products`
(the per-alert core, reports) -> :mod:`gwfollow.store` -> :mod:`gwfollow.pipeline`
-> :mod:`gwfollow.service` and :mod:`gwfollow.cli`.  The numba kernels live in
:mod:`gwfollow.kernels`.

The names below are loaded on first use (PEP 562), so that importing a
sub-package (the command line's ``--help``, a worker process) does not pay for
astropy and mocpy before it needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from gwfollow.errors import GwfollowError
from gwfollow.version import __version__

_LAZY = {
    "SkyMap": "gwfollow.skymaps.skymap",
    "SkyMapMeta": "gwfollow.skymaps.skymap",
    "read_skymap": "gwfollow.skymaps.skymap",
    "write_skymap": "gwfollow.skymaps.skymap",
    "credible_moc": "gwfollow.regions.moc",
    "credible_mocs": "gwfollow.regions.moc",
    "event_stmoc": "gwfollow.regions.moc",
    "moc_area": "gwfollow.regions.moc",
    "probability_in_moc": "gwfollow.regions.moc",
    "write_moc": "gwfollow.regions.moc",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gwfollow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["GwfollowError", "__version__", *_LAZY]
