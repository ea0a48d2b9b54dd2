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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gwfollow.kernels import footprints as kfp
from gwfollow.skymaps.skymap import SkyMap

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
