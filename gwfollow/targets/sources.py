"""One interface to every galaxy catalogue: a local table, the embedded OpenNGC, a
HEALPix-partitioned (HATS) directory or a TAP service.

:func:`open_catalog` reads a catalogue *spec* once and returns a
:class:`CatalogSource`, which answers the two questions the rest of gwfollow
asks of a catalogue:

- :meth:`CatalogSource.rows_in`: the galaxies inside depth-29 HEALPix ranges
  (coarse by HEALPix pixel or MOC constraint, then exact);
- :meth:`CatalogSource.rank`: the galaxies of a region ranked by 3-D posterior
  density, the same for every kind of source (a partitioned catalogue ranks
  partition by partition and merges exactly, see :mod:`gwfollow.targets.partitioned`).

Specs: ``openngc``, a path to a CSV/VOTable/FITS/Parquet table, a path to a HATS
directory, or ``tap:URL#TABLE``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt

from gwfollow.errors import ConfigError
from gwfollow.kernels import rank as krank
from gwfollow.targets.catalogues import Catalog, load_catalog
from gwfollow.targets.partitioned import (
    PartitionedCatalog,
    ProgressFn,
    is_partitioned,
    rank_partitioned,
)
from gwfollow.targets.rank import RankedGalaxies, rank_galaxies
from gwfollow.targets.tap import TapCatalogSource

Ranges = npt.NDArray[np.int64]


def parse_tap_spec(spec: str) -> tuple[str, str] | None:
    """``tap:URL#TABLE`` -> (URL, TABLE); None for other catalogue specs.

    >>> parse_tap_spec("tap:http://127.0.0.1:8080/tap#gwf.glade")
    ('http://127.0.0.1:8080/tap', 'gwf.glade')
    """
    if not spec.startswith("tap:"):
        return None
    body = spec[4:]
    if "#" not in body:
        raise ConfigError(f"TAP catalogue {spec!r} must be tap:URL#TABLE", hint="e.g. tap:http://host/tap#gal.glade")
    url, table = body.rsplit("#", 1)
    return url, table


class CatalogSource(ABC):
    """A galaxy catalogue opened for region searches and rankings.

    Attributes
    ----------
    name : str
        The catalogue's name in products and provenance.
    spec : str
        What it was opened from.
    """

    name: str
    spec: str

    @abstractmethod
    def rows_in(self, ranges: Ranges | None) -> Catalog:
        """The galaxies inside ``ranges`` (canonical depth-29 ranges); all of them for None."""

    def rank(self, skymap: Any, region: Ranges | None, *, weighting: str | None = None, limit: int | None = None,
             client: Any = None, progress: ProgressFn | None = None) -> RankedGalaxies:
        """The galaxies of ``region`` ranked by 3-D posterior density
        (:func:`gwfollow.targets.rank.rank_galaxies`); ``client`` and ``progress``
        matter only to partitioned catalogues."""
        return rank_galaxies(skymap, self.rows_in(region), region=region, level=None, weighting=weighting,
                             limit=limit)


class TableSource(CatalogSource):
    """A catalogue held in memory (a file or OpenNGC), with its sorted HEALPix index
    built once, so a region touches only its own galaxies."""

    def __init__(self, catalog: Catalog, spec: str) -> None:
        self.catalog = catalog
        self.name = catalog.name
        self.spec = spec
        catalog.index()

    def rows_in(self, ranges: Ranges | None) -> Catalog:
        if ranges is None:
            return self.catalog

        pix, order = self.catalog.index()
        return self.catalog.subset(np.sort(order[krank.select_sorted(pix, ranges)]))

    def rank(self, skymap: Any, region: Ranges | None, *, weighting: str | None = None, limit: int | None = None,
             client: Any = None, progress: ProgressFn | None = None) -> RankedGalaxies:
        # rank_galaxies walks the index itself (coarse, then the map's cells in sky order).
        return rank_galaxies(skymap, self.catalog, region=region, level=None, weighting=weighting, limit=limit)


class PartitionedSource(CatalogSource):
    """A HATS directory: partitions pruned by the region, ranked one by one
    (here or on a Dask cluster) and merged exactly."""

    def __init__(self, catalog: PartitionedCatalog, spec: str) -> None:
        self.catalog = catalog
        self.name = catalog.name
        self.spec = spec

    def rows_in(self, ranges: Ranges | None) -> Catalog:
        return self.catalog.read_region(ranges)[0]

    def rank(self, skymap: Any, region: Ranges | None, *, weighting: str | None = None, limit: int | None = None,
             client: Any = None, progress: ProgressFn | None = None) -> RankedGalaxies:
        return rank_partitioned(skymap, self.catalog, region=region, level=None, weighting=weighting, limit=limit,
                                client=client, progress=progress)


class TapSource(CatalogSource):
    """A table of a TAP service, queried per region (MOC or cone constraint in
    ADQL, then the exact filter locally)."""

    def __init__(self, tap: TapCatalogSource, spec: str) -> None:
        self.tap = tap
        self.name = tap.name
        self.spec = spec

    def rows_in(self, ranges: Ranges | None) -> Catalog:
        return self.tap.query_all() if ranges is None else self.tap.query_region(ranges)


def open_catalog(spec: str, columns: dict[str, str] | None = None) -> CatalogSource:
    """Open a catalogue by spec: ``openngc``, a table file, a HATS directory or ``tap:URL#TABLE``.

    Parameters
    ----------
    spec : str
    columns : dict, optional
        Column roles (``ra``, ``dec``, ``dist``, ``z``, ``bmag``, ``kmag``, ``id``)
        for columns not recognised by name.

    Raises
    ------
    CatalogError, ConfigError, TapError
        The catalogue cannot be opened; the message names it.
    """
    tap = parse_tap_spec(spec)
    if tap is not None:
        return TapSource(TapCatalogSource(tap[0], tap[1], columns or None), spec)
    if is_partitioned(spec):
        return PartitionedSource(PartitionedCatalog(spec, columns=columns or None), spec)
    return TableSource(load_catalog(spec, columns=columns), spec)
