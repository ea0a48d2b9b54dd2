"""Footprints prepared once, for the probability in every field of any sky map.

:class:`FootprintGrid` holds the footprints of all fields of a telescope as
spans of *atoms* (the intervals between consecutive footprint boundaries,
:mod:`gwfollow.kernels.footprints`).  It is built once per telescope and
order (:func:`gwfollow.targets.fields.footprint_grid` caches it in the
process); then, per sky map, one merge of the boundaries with the map's
cells gives the probability in every field (:meth:`FootprintGrid.probabilities`),
and the greedy selection counts what a field adds to those already chosen
atom by atom (:meth:`FootprintGrid.greedy`), with no set algebra.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gwfollow.kernels import footprints as kfp
from gwfollow.skymaps.skymap import SkyMap

log = logging.getLogger(__name__)

#: Bumped whenever the grid's arrays change meaning: older cache files are then ignored.
CACHE_FORMAT = "gwfollow-footprint-grid-1"

Cumulative = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""``F`` at the grid's bounds as a double-double ``(hi, lo)``."""


@dataclass(frozen=True, eq=False)
class FootprintGrid:
    """All footprints of a telescope, as atom spans.

    Attributes
    ----------
    order : int
        HEALPix order of the footprints' border cells.
    bounds : ndarray of int64
        Sorted, unique depth-29 bounds of all footprint ranges.
    ia, ib : ndarray of int32
        Atom span ``[ia, ib)`` of each footprint range.
    offsets : ndarray of int64
        Field ``f`` (a row of the telescope) owns spans ``offsets[f]:offsets[f + 1]``.
    """

    order: int
    bounds: npt.NDArray[np.int64]
    ia: npt.NDArray[np.int32]
    ib: npt.NDArray[np.int32]
    offsets: npt.NDArray[np.int64]

    @classmethod
    def from_footprints(cls, feet: Sequence[npt.NDArray[np.int64]], order: int) -> FootprintGrid:
        """Lay footprints (canonical depth-29 ranges, one per field) on one atom grid."""
        counts = np.array([f.shape[0] for f in feet], dtype=np.int64)
        offsets = np.zeros(len(feet) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ranges = np.concatenate(feet) if feet else np.empty((0, 2), dtype=np.int64)
        # Sorted unique bounds by sort and mask: numpy 2.4's np.unique hashes
        # integers, ten times slower than sorting for these sizes.
        flat = np.sort(ranges.reshape(-1))
        bounds = flat[np.concatenate(([True], flat[1:] != flat[:-1]))] if flat.size else flat
        ia, ib = kfp.atom_spans(bounds, ranges)
        return cls(int(order), bounds, ia, ib, offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def cumulative(self, skymap: SkyMap) -> Cumulative:
        """``F`` at every bound: the map's probability of the sky below it (hi, lo)."""
        starts, ends = skymap.sorted_cells
        return kfp.cumulative_at(self.bounds, starts, ends, skymap.by_start, skymap.prob)

    def probabilities(self, skymap: SkyMap, cum: Cumulative | None = None) -> npt.NDArray[np.float64]:
        """Probability in each field (by telescope row), exact for partial cells up to rounding."""
        hi, lo = self.cumulative(skymap) if cum is None else cum
        return kfp.span_sums(hi, lo, self.ia, self.ib, self.offsets)

    def touching(self, region: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Rows of the fields whose footprint shares at least one depth-29 pixel with ``region``."""
        return np.flatnonzero(kfp.overlap_pixels(self.bounds, region, self.ia, self.ib, self.offsets) > 0)

    def greedy(
        self, cum: Cumulative, rows: npt.NDArray[np.int64], prob: npt.NDArray[np.float64],
        limit: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Greedy selection among fields ``rows`` (probabilities ``prob``):
        (indices into ``rows`` in selection order, probability each added)."""
        return kfp.greedy_cover(kfp.atom_probabilities(*cum), self.ia, self.ib, self.offsets,
                                np.ascontiguousarray(rows, dtype=np.int64),
                                np.ascontiguousarray(prob, dtype=np.float64), int(limit))


    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the grid to ``path`` (``.npz``), atomically: a reader sees
        the old file or the whole new one."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, format=np.array(CACHE_FORMAT), order=np.array(self.order, dtype=np.int64),
                         bounds=self.bounds, ia=self.ia, ib=self.ib, offsets=self.offsets)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], n_fields: int, order: int) -> FootprintGrid | None:
        """The grid saved at ``path`` for ``n_fields`` fields at ``order``;
        None when the file is missing, of another format, or inconsistent
        (the caller builds the grid again)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != CACHE_FORMAT or int(z["order"]) != order:
                    return None
                grid = cls(order, z["bounds"], z["ia"], z["ib"], z["offsets"])
        except FileNotFoundError:
            return None
        except (OSError, KeyError, ValueError) as exc:
            log.warning("footprint cache %s unreadable (%s): building the grid again", path, exc)
            return None
        nb, na = grid.bounds.shape[0], grid.ia.shape[0]
        ok = (grid.bounds.dtype == np.int64 and grid.ia.dtype == np.int32 and grid.ib.dtype == np.int32
              and grid.offsets.dtype == np.int64 and grid.offsets.shape == (n_fields + 1,)
              and grid.ib.shape == (na,) and int(grid.offsets[0]) == 0 and int(grid.offsets[-1]) == na
              and bool(np.all(np.diff(grid.offsets) >= 0)) and bool(np.all(np.diff(grid.bounds) > 0))
              and (na == 0 or (int(grid.ia.min()) >= 0 and int(grid.ib.max()) < max(nb, 1)
                               and bool(np.all(grid.ia <= grid.ib)))))
        if not ok:
            log.warning("footprint cache %s is inconsistent: building the grid again", path)
            return None
        return grid
