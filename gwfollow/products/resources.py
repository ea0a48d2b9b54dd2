"""What processing an alert needs besides the alert: built once per worker, passed in.

A :class:`Resources` holds the configuration and everything it names that is
costly to prepare: catalogues (opened and indexed), telescopes (their grids and
field footprints) and coverages (read from files, MOCServer or pointings).
The pipeline's worker processes build one at start (:meth:`Resources.warm`
prepares the telescopes before the first alert); replay and the Dask tasks
build their own.  Nothing is cached at module level and nothing reads the
environment: the configuration passed in is the only input.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import astropy.coordinates  # noqa: F401  (imported here so the first alert does not wait for it)
import mocpy  # noqa: F401

from gwfollow.config import Config, CoverageConfig, TelescopeConfig
from gwfollow.errors import ConfigError, GwfollowError
from gwfollow.regions.coverage import Coverage, load_coverage
from gwfollow.regions.mocserver import coverage_from_mocserver
from gwfollow.targets.fields import (
    Telescope,
    footprint_grid,
    pointings_to_stmoc,
    telescope_from_config,
)
from gwfollow.targets.sources import CatalogSource, open_catalog

log = logging.getLogger("gwfollow.products.resources")


class Resources:
    """Catalogues, telescopes and coverages of one configuration, each prepared on first use
    and kept for the life of the object (a worker process).

    Parameters
    ----------
    config : Config
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._catalogs: dict[str, CatalogSource] = {}
        self._telescopes: dict[TelescopeConfig, Telescope] = {}
        self._coverages: dict[CoverageConfig, Coverage] = {}

    def catalog(self, spec: str) -> CatalogSource:
        """The catalogue named by ``spec`` in ``[targets] catalogs``, opened (and indexed) once."""
        if spec not in self._catalogs:
            self._catalogs[spec] = open_catalog(spec)
        return self._catalogs[spec]

    def telescope(self, tc: TelescopeConfig) -> Telescope:
        """The telescope of a ``[telescopes.NAME]`` table, its grid read once."""
        if tc not in self._telescopes:
            self._telescopes[tc] = telescope_from_config(tc)
        return self._telescopes[tc]

    def coverage(self, cc: CoverageConfig) -> Coverage:
        """The coverage of a ``[coverages.NAME]`` table: a MOC file, a MOCServer
        data set (cached on disk) or a telescope's executed pointings."""
        if cc in self._coverages:
            return self._coverages[cc]
        if cc.path:
            cov = load_coverage(os.path.expanduser(cc.path), name=cc.name)
        elif cc.mocserver_id:
            cov = coverage_from_mocserver(cc.mocserver_id, os.path.expanduser(self.config.coverage_cache))
        else:
            tcs = {t.name: t for t in self.config.telescopes}
            if cc.telescope not in tcs:
                raise ConfigError(f"coverages.{cc.name}: telescope {cc.telescope!r} is not configured")
            tel = self.telescope(tcs[cc.telescope])
            grid = {int(i): (float(r), float(d)) for i, r, d in zip(tel.ids, tel.ra, tel.dec)}
            cov = pointings_to_stmoc(os.path.expanduser(cc.pointings), grid, tel.fov, name=cc.name)
        self._coverages[cc] = cov
        return cov

    def warm(self) -> None:
        """Prepare each configured telescope with the footprint grid of all its
        fields (computed together, about 0.5 s for ZTF's 1,778 fields) before the first alert.

        A telescope that cannot be prepared is logged; its error is reported
        again, per alert, where it is used.
        """
        for tc in self.config.telescopes:
            try:
                tel = self.telescope(tc)
                footprint_grid(tel, tc.order, self.config.targets.footprint_cache or None)
            except (GwfollowError, OSError, ValueError) as exc:
                log.warning("telescope %s not prepared: %s: %s", tc.name, type(exc).__name__, exc)

    def __repr__(self) -> str:
        return (f"Resources({len(self._catalogs)} catalogue(s), {len(self._telescopes)} telescope(s), "
                f"{len(self._coverages)} coverage(s))")


def resources_for(config: Config, resources: Any = None) -> Resources:
    """``resources`` when given for this configuration, else a new :class:`Resources`."""
    if isinstance(resources, Resources) and resources.config == config:
        return resources
    return Resources(config)
