"""Telescope fields ranked by enclosed probability, with greedy selection.

A telescope is a tile grid (field id -> centre) and a field of view.  For a
sky map, the fields near the credible region are found first (a k-d tree on
unit vectors: coarse), then each candidate's footprint MOC is intersected
with the map exactly (fine).  The greedy selection adds, at each step, the
field that adds the most probability not yet covered (overlapping fields
are not counted twice) until the target cumulative probability is reached
(the classic greedy algorithm for maximum coverage, Nemhauser et al. 1978;
probability coverage is submodular, so a lazy priority queue is exact).
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .coverage import FieldOfView, field_footprint_ranges, read_field_grid
from .errors import FieldsError
from .kernels import ranges as kr
from .moc import credible_ranges, probability_in_ranges
from .skymap import SkyMap


@dataclass(frozen=True)
class Telescope:
    """A tile grid and field of view.

    Attributes
    ----------
    name : str
    ids : ndarray of int64
    ra, dec : ndarray of float64
        Field centres, degrees.
    fov : FieldOfView
    grid_source : str
        File or ``generated``.
    """

    name: str
    ids: npt.NDArray[np.int64]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    fov: FieldOfView
    grid_source: str = ""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_file(cls, name: str, grid: str | os.PathLike[str], fov: FieldOfView) -> Telescope:
        """Read a tile grid (ZTF ``.txt``, DECam/ULTRASAT CSV, gwemopt ``.tess``)."""
        centres = read_field_grid(grid)
        ids = np.array(sorted(centres), dtype=np.int64)
        ra = np.array([centres[i][0] for i in ids], dtype=np.float64)
        dec = np.array([centres[i][1] for i in ids], dtype=np.float64)
        return cls(name, ids, ra, dec, fov, str(grid))

    @classmethod
    def generated(cls, name: str, fov: FieldOfView, overlap: float = 0.05) -> Telescope:
        """A tiling of the whole sky for ``fov`` (the embedded default grid).

        Rings of constant declination spaced by the field height (less the
        overlap fraction); along each ring, fields spaced by the width over
        ``cos(dec)`` of the ring's edge nearer the equator, where the ring is
        widest, so that neighbouring fields overlap everywhere else.
        """
        if fov.shape == "circle":
            w = h = fov.radius_deg * math.sqrt(2.0)
        else:
            w, h = fov.width_deg, fov.height_deg
        step_dec = h * (1 - overlap)
        n_rings = int(math.ceil(180.0 / step_dec))
        decs = -90 + (np.arange(n_rings) + 0.5) * (180.0 / n_rings)
        ras, dcs = [], []
        for d in decs:
            near = max(0.0, abs(d) - h / 2)  # the ring's widest parallel
            n = max(3, int(math.ceil(360.0 * math.cos(math.radians(near)) / (w * (1 - overlap)))))
            ras.extend((np.arange(n) + 0.5) * 360.0 / n)
            dcs.extend([d] * n)
        ids = np.arange(1, len(ras) + 1, dtype=np.int64)
        return cls(name, ids, np.array(ras), np.array(dcs), fov, "generated")


def telescope_from_config(tc: Any) -> Telescope:
    """A :class:`Telescope` from a ``[telescopes.NAME]`` table (:class:`~gwfollow.config.TelescopeConfig`)."""
    if tc.fov_shape == "circle":
        fov = FieldOfView.circle(tc.fov_radius_deg)
    elif tc.fov_shape == "square":
        fov = FieldOfView.square(tc.fov_width_deg, tc.rotation_deg)
    else:
        fov = FieldOfView.rectangle(tc.fov_width_deg, tc.fov_height_deg or tc.fov_width_deg, tc.rotation_deg)
    if tc.grid == "generated":
        return Telescope.generated(tc.name, fov)
    return Telescope.from_file(tc.name, Path(tc.grid).expanduser(), fov)


@dataclass(frozen=True)
class RankedFields:
    """Fields in greedy order.

    Attributes
    ----------
    rows : ndarray of int64
        Rows of the telescope's grid, in selection order.
    prob : ndarray
        Probability enclosed by each field alone.
    marginal : ndarray
        Probability it added when selected.
    cumprob : ndarray
        Probability of the union of the fields up to this one.
    selected : ndarray of bool
        Within the greedy selection reaching ``target``.
    """

    telescope: Telescope
    rows: npt.NDArray[np.int64]
    prob: npt.NDArray[np.float64]
    marginal: npt.NDArray[np.float64]
    cumprob: npt.NDArray[np.float64]
    selected: npt.NDArray[np.bool_]
    target: float
    n_candidates: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def table(self):
        """Astropy Table ``rank, field_id, ra, dec, prob, marginal_prob, cumprob, selected``."""
        from astropy import units as u
        from astropy.table import Table

        t = Table()
        t["rank"] = np.arange(1, len(self) + 1)
        t["field_id"] = self.telescope.ids[self.rows]
        t["ra"] = self.telescope.ra[self.rows] * u.deg
        t["dec"] = self.telescope.dec[self.rows] * u.deg
        t["prob"] = self.prob
        t["marginal_prob"] = self.marginal
        t["cumprob"] = self.cumprob
        t["selected"] = self.selected
        t.meta.update({k: v for k, v in self.provenance.items() if isinstance(v, (str, int, float))})
        return t


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def candidate_fields(telescope: Telescope, region: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rows of fields whose footprint may touch ``region`` (coarse filter)."""
    from scipy.spatial import cKDTree

    from .kernels.healpix import uniq_to_order_ipix

    if region.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    order = 7  # cells of 0.46 deg
    cells = kr.to_uniq(kr.degrade(region, order))
    o, p = uniq_to_order_ipix(cells)
    # Expand coarse cells to order-7 children centres (the region at order 7).
    import healpy as hp

    pix7 = np.concatenate([(pp << (2 * (order - oo))) + np.arange(1 << (2 * (order - oo)))
                           for oo, pp in zip(o, p)]) if len(o) else np.empty(0, dtype=np.int64)
    vec = np.stack(hp.pix2vec(2**order, pix7, nest=True), axis=1)
    fov = telescope.fov
    half_diag = fov.radius_deg if fov.shape == "circle" else 0.5 * math.hypot(fov.width_deg, fov.height_deg)
    reach = math.radians(half_diag + hp.max_pixrad(2**order, degrees=True) + 0.05)
    chord = 2 * math.sin(min(reach, math.pi) / 2)
    tree = cKDTree(vec)
    d, _ = tree.query(_unit_vectors(telescope.ra, telescope.dec), k=1, distance_upper_bound=chord)
    return np.flatnonzero(np.isfinite(d)).astype(np.int64)


def rank_fields(skymap: SkyMap, telescope: Telescope, *, target: float = 0.9, level: float = 0.999,
                order: int = 10, max_fields: int | None = None) -> RankedFields:
    """Rank a telescope's fields for a sky map.

    Parameters
    ----------
    skymap : SkyMap
    telescope : Telescope
    target : float
        Cumulative probability the greedy selection aims for.
    level : float
        Fields are searched around the credible region at this level.
    order : int
        HEALPix order of the footprints' border cells.
    max_fields : int, optional
        List at most this many fields.

    Returns
    -------
    RankedFields
        Probabilities are fractions of the map's total (0..1).
    """
    from . import __version__

    if not 0 < target <= 1:
        raise FieldsError(f"target {target} is not in (0, 1]")
    region = credible_ranges(skymap, [level], "include")[0]
    cand = candidate_fields(telescope, region)
    foot = [field_footprint_ranges(float(telescope.ra[r]), float(telescope.dec[r]), telescope.fov, order)
            for r in cand]
    prob = np.array([probability_in_ranges(skymap, f) for f in foot])
    # Lazy greedy: the heap holds (-upper bound on the marginal gain, index).
    heap = [(-p, i) for i, p in enumerate(prob)]
    heapq.heapify(heap)
    covered = np.empty((0, 2), dtype=np.int64)
    covered_prob = 0.0
    order_sel: list[int] = []
    marg: list[float] = []
    cum: list[float] = []
    limit = len(cand) if max_fields is None else min(max_fields, len(cand))
    while heap and len(order_sel) < limit:
        neg, i = heapq.heappop(heap)
        new = kr.difference(foot[i], covered) if covered.shape[0] else foot[i]
        gain = probability_in_ranges(skymap, new) if new.shape[0] else 0.0
        if heap and gain < -heap[0][0] - 1e-15:
            heapq.heappush(heap, (-gain, i))
            continue
        order_sel.append(i)
        marg.append(gain)
        covered = kr.union(covered, foot[i])
        covered_prob = probability_in_ranges(skymap, covered)
        cum.append(covered_prob)
    cumarr = np.array(cum)
    n_sel = int(np.searchsorted(cumarr, target, side="left")) + 1 if len(cumarr) else 0
    selected = np.arange(len(cumarr)) < min(n_sel, len(cumarr))
    rows = cand[np.array(order_sel, dtype=np.int64)] if order_sel else np.empty(0, dtype=np.int64)
    prov = {"skymap_sha256": skymap.sha256, "telescope": telescope.name, "grid": Path(telescope.grid_source).name,
            "fov": telescope.fov.shape, "target": target, "level": level, "gwfollow": __version__}
    return RankedFields(telescope, rows, prob[np.array(order_sel, dtype=np.int64)] if order_sel else np.empty(0),
                        np.array(marg), cumarr, selected, target, int(len(cand)), prov)
