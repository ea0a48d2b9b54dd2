"""Ranked targets: galaxies by 3-D posterior density.

:func:`rank_galaxies` evaluates, for each galaxy, the 2-D posterior density
of its sky position (per steradian) and the 3-D posterior density at its
position and distance (per Mpc^3): the quantity ligo.skymap's
``crossmatch`` reports as ``probdensity_vol``.  Search is coarse-then-fine:
the catalogue's sorted HEALPix index selects the galaxies inside the region
(by default the 99.9 % credible region), the numba kernels evaluate them.

Scores: the 3-D density (2-D for maps without distance), optionally times
the galaxy's luminosity in the B or K band (``L ∝ 10**(-0.4 M)`` with the
absolute magnitude ``M = m - 5 log10(d / 10 pc)``), normalised to sum to 1
over the ranked galaxies.  Galaxies without distance cannot get a 3-D
density: they are listed after the others with an empty score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.table import Table

from gwfollow.errors import RankError
from gwfollow.kernels import rank as krank
from gwfollow.kernels.healpix import lonlat_to_nest
from gwfollow.regions.moc import credible_ranges
from gwfollow.skymaps.skymap import SkyMap
from gwfollow.targets.catalogues import Catalog
from gwfollow.version import __version__


@dataclass(frozen=True)
class RankedGalaxies:
    """Galaxies in rank order.

    Attributes
    ----------
    rows : ndarray of int64
        Catalogue rows, best first.
    probdensity_2d : ndarray
        Posterior density of the sky position, per steradian.
    probdensity_3d : ndarray
        Posterior density at position and distance, per Mpc^3 (NaN without
        distance).
    score, cumscore : ndarray
        Normalised score and its running sum (NaN for galaxies without one).
    mode : str
        ``3d`` or ``2d``.
    provenance : dict
    scan : dict, optional
        For partitioned catalogues: what the search read (partitions, row
        groups, rows, peak memory per worker) and how long it took.
    """

    catalog: Catalog
    rows: npt.NDArray[np.int64]
    probdensity_2d: npt.NDArray[np.float64]
    probdensity_3d: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    cumscore: npt.NDArray[np.float64]
    mode: str
    n_candidates: int
    provenance: dict[str, Any] = field(default_factory=dict)
    scan: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def table(self):
        """An astropy Table with the columns ``rank, id, ra, dec, dist_mpc,
        probdensity_2d, probdensity_3d, score, cumscore`` (units attached)."""

        c = self.catalog
        r = self.rows
        t = Table()
        t["rank"] = np.arange(1, len(r) + 1)
        t["id"] = c.ids[r]
        t["ra"] = c.ra[r] * u.deg
        t["dec"] = c.dec[r] * u.deg
        t["dist_mpc"] = c.dist[r] * u.Mpc
        t["probdensity_2d"] = self.probdensity_2d * u.sr**-1
        t["probdensity_3d"] = self.probdensity_3d * u.Mpc**-3
        t["score"] = self.score
        t["cumscore"] = self.cumscore
        t.meta.update({k: v for k, v in self.provenance.items() if isinstance(v, (str, int, float))})
        return t


def _luminosity(mag: np.ndarray, dist: np.ndarray) -> np.ndarray:
    absmag = mag - 5.0 * np.log10(dist * 1e5)  # d in Mpc -> 10 pc units: d * 1e6 / 10
    return 10.0 ** (-0.4 * absmag)


def crossmatch_distance_grid(skymap: SkyMap, dist: np.ndarray) -> np.ndarray:
    """Distances snapped to ligo.skymap ``crossmatch``'s grid.

    ``crossmatch`` evaluates ``probdensity_vol`` at ``r[i]`` with
    ``r = d_r * arange(1, 1000)``, ``d_r = max(6 * distmean, max(dist)) / 1000``
    and ``i = digitize(dist, r) - 1``: this returns those grid distances, so
    that gwfollow can be compared with crossmatch to rounding.  Distances
    below ``d_r`` are out of crossmatch's grid (NaN here).
    """
    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.distance import parameters_to_marginal_moments

    order = np.argsort(skymap.probdensity)[::-1]
    distmean, _ = parameters_to_marginal_moments(skymap.prob[order], skymap.distmu[order], skymap.distsigma[order])
    max_r = 6 * distmean
    finite = dist[np.isfinite(dist)]
    if finite.size and finite.max() > max_r:
        max_r = finite.max()
    d_r = max_r / 1000
    r = d_r * np.arange(1, 1000)
    i = np.digitize(dist, r) - 1
    out = np.where((i >= 0) & np.isfinite(dist), r[np.clip(i, 0, r.size - 1)], np.nan)
    return out


def rank_galaxies(
    skymap: SkyMap,
    catalog: Catalog,
    *,
    region: npt.NDArray[np.int64] | None = None,
    level: float | None = 0.999,
    weighting: str | None = None,
    limit: int | None = None,
    distance_grid: str = "exact",
) -> RankedGalaxies:
    """Rank galaxies by posterior density.

    Parameters
    ----------
    skymap : SkyMap
    catalog : Catalog
    region : (n, 2) int64, optional
        Depth-29 ranges restricting the search; by default the credible
        region at ``level`` (``None``: the whole sky).
    level : float or None
        Credible level of the default region.
    weighting : {None, "B", "K"}
        Multiply by the galaxy's luminosity in that band.
    limit : int, optional
        Keep the best ``limit`` galaxies (cumulative scores stay those of
        the full ranking).
    distance_grid : {"exact", "crossmatch"}
        ``exact`` evaluates the density at each galaxy's distance;
        ``crossmatch`` snaps distances to ligo.skymap crossmatch's grid
        (:func:`crossmatch_distance_grid`), for comparisons.

    Returns
    -------
    RankedGalaxies
        Densities per steradian (2-D) and per Mpc^3 (3-D).
    """

    check_options(weighting, limit)
    if distance_grid not in ("exact", "crossmatch"):
        raise RankError(f"distance_grid {distance_grid!r} is not exact or crossmatch")
    if region is None and level is not None:
        region = credible_ranges(skymap, [level], "include")[0]
    bs = skymap.by_start
    starts = skymap.ranges[bs, 0].copy()
    ends = skymap.ranges[bs, 1].copy()
    has_d = skymap.has_distance
    empty = np.empty(0)
    mu, sg, nm = (skymap.distmu, skymap.distsigma, skymap.distnorm) if has_d else (empty, empty, empty)
    if catalog.has_index and region is not None:
        # Coarse: the sorted index gives the galaxies inside the region;
        # fine: one merging walk over the map's cells in sky order.
        pix, order = catalog.index()
        pos = krank.select_sorted(pix, region)
        cand = order[pos]
        cells = krank.locate_sorted(pix[pos], starts, ends, bs)
        dist = catalog.dist[cand]
        if distance_grid == "crossmatch" and has_d:
            dist = crossmatch_distance_grid(skymap, dist)
        p2, p3 = krank.posterior_densities(cells, dist, skymap.probdensity, mu, sg, nm, has_d)
    else:
        # A catalogue seen once: a fused scan, no index to build.
        dist = catalog.dist
        if distance_grid == "crossmatch" and has_d:
            dist = crossmatch_distance_grid(skymap, dist)
        # An order-5 cell lookup (12,288 entries, 48 kB: it stays in cache)
        # narrows each galaxy's cell search; finer ones miss the cache.
        lut = krank.cell_lookup(ends, 5)
        if region is None and weighting is None and limit is not None:
            # The whole sky, best `limit`: one pass keeps the best per slice
            # and the exact sum; no array the size of the catalogue.
            n = len(catalog)
            k = min(limit, n)
            nchunks = min(64, max(1, n // max(1, 8 * k)))
            table = krank.density_table(bs, skymap.probdensity, mu, sg, nm, has_d)
            pos, p2k, p3k, limbs = krank.scan_top_sky(catalog.ra, catalog.dec, dist, starts, ends, table, has_d,
                                                      lut, 5, k, nchunks)
            score, cum = scores_and_cumulative(p3k if has_d else p2k, limbs_to_float(limbs))
            prov = ranking_provenance(skymap, catalog.name, catalog.version, None, None, "3d" if has_d else "2d")
            return RankedGalaxies(catalog, pos, p2k, p3k, score, cum, "3d" if has_d else "2d", n, prov)
        reg = region if region is not None else np.empty((0, 2), dtype=np.int64)
        inside, p2, p3 = krank.evaluate_positions(
            catalog.ra, catalog.dec, dist, reg, starts, ends, bs, skymap.probdensity, mu, sg, nm, has_d, lut, 5)
        if region is None:  # the whole sky: every galaxy is a candidate
            cand = np.arange(len(catalog), dtype=np.int64)
        else:
            cand = np.flatnonzero(inside)
            p2, p3 = p2[cand], p3[cand]

        def sky(pos: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
            # Candidates are in catalogue order here: ties are broken by sky
            # position first, as the index and partitions order them.

            rows = cand[pos]
            return lonlat_to_nest(29, np.radians(catalog.ra[rows]), np.radians(catalog.dec[rows]))
    mode = "3d" if has_d else "2d"
    mag = (catalog.bmag[cand] if weighting == "B" else catalog.kmag[cand]) if weighting else None
    raw = raw_scores(p2, p3, has_d, mag, catalog.dist[cand] if weighting else None)
    total = exact_total(raw)
    idx, score, cum = order_ranking(raw, p2, total, limit, sky=None if catalog.has_index and region is not None
                                    else sky)
    prov = ranking_provenance(skymap, catalog.name, catalog.version, level if region is not None else None,
                              weighting, mode)
    return RankedGalaxies(catalog, cand[idx], p2[idx], p3[idx], score, cum, mode, int(len(cand)), prov)


def raw_scores(p2: npt.NDArray[np.float64], p3: npt.NDArray[np.float64], has_distance: bool,
               mag: npt.NDArray[np.float64] | None = None,
               dist: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.float64]:
    """Unnormalised scores: the 3-D density (2-D without distances), times
    the luminosity from ``mag`` at ``dist`` when weighting (NaN where it is
    unknown)."""
    raw = p3 if has_distance else p2
    if mag is None:
        return raw
    lum = _luminosity(mag, dist)
    return np.where(np.isfinite(lum), raw * lum, np.nan)


def check_options(weighting: str | None, limit: int | None) -> None:
    """Typed errors for a bad weighting band or limit."""
    if weighting not in (None, "B", "K"):
        raise RankError(f"weighting {weighting!r} is not one of B, K")
    if limit is not None and limit < 0:
        raise RankError("limit must be >= 0")


def ranking_provenance(skymap: SkyMap, catalog: str, version: str, level: float | None, weighting: str | None,
                       mode: str) -> dict[str, Any]:
    """Where a ranking came from (stored with the product)."""

    return {"skymap_sha256": skymap.sha256, "catalog": catalog, "catalog_version": version, "level": level,
            "weighting": weighting or "none", "mode": mode, "gwfollow": __version__}


def exact_total(raw: npt.NDArray[np.float64]) -> float:
    """The correctly rounded sum of the finite ``raw`` scores.

    Independent of the order and grouping of the scores, so that a ranking
    merged from catalogue partitions normalises exactly as one over a
    single file (:func:`kernels.rank.exact_sum_limbs`).
    """
    return limbs_to_float(krank.exact_sum_limbs(np.ascontiguousarray(raw, dtype=np.float64)))


def limbs_to_float(*limbs: npt.NDArray[np.int64]) -> float:
    """Add exact-sum limbs (:func:`kernels.rank.exact_sum_limbs`) of one or
    more pieces and round the total once, correctly (half to even), to a double."""

    total = 0
    for lb in limbs:
        for sign, row in ((1, lb[0]), (-1, lb[1])):
            total += sign * int.from_bytes(row.astype("<u4").tobytes(), "little")
    try:
        return float(Fraction(total, 1 << 1074))
    except OverflowError:  # beyond the largest double, as a float sum would overflow
        return math.inf if total > 0 else -math.inf


def keep_for_merge(raw: npt.NDArray[np.float64], p2: npt.NDArray[np.float64],
                   limit: int | None) -> npt.NDArray[np.int64]:
    """Positions (ascending) of the candidates of one partition that can reach
    the merged top ``limit``: its own top ``limit`` and every tie (a galaxy
    ranked after ``limit`` others of its partition cannot rank higher in the
    merged list, whose order is the same)."""
    if limit is None:
        return np.arange(raw.shape[0], dtype=np.int64)
    return krank.top_positions(raw, p2, limit)


def order_ranking(raw: npt.NDArray[np.float64], p2: npt.NDArray[np.float64], total: float,
                  limit: int | None, sky: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]] | None = None,
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Rank candidates: ``(positions best first, score, cumscore)``.

    Score = ``raw / total`` (NaN without a raw score); order: raw score
    descending, then 2-D density descending, then sky position (depth-29
    pixel), then catalogue order; galaxies without a score last, by 2-D
    density.
    Candidates are given in catalogue order within equal pixels; ``sky``
    maps positions to their pixels, or is None when the candidates are
    already in sky order (an index, partitions).
    """
    n = raw.shape[0] if limit is None else min(limit, raw.shape[0])
    # Only the best n (and ties with the n-th) are sorted.
    top = np.arange(raw.shape[0]) if n == raw.shape[0] else krank.top_positions(raw, p2, n)
    r, q = raw[top], p2[top]
    valid = np.isfinite(r)
    keys = (-q, np.where(valid, -r, -q), ~valid)
    if sky is not None:
        keys = (sky(top),) + keys
    order = np.lexsort(keys)[:n]
    idx = top[order]
    score, cum = scores_and_cumulative(r[order], total)
    return idx, score, cum


def scores_and_cumulative(raw: npt.NDArray[np.float64], total: float,
                          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Scores (``raw / total``; NaN without a raw score) and their running
    sum, for raw scores already in ranking order."""
    valid = np.isfinite(raw)
    score = np.where(valid, raw / total if total > 0 else 0.0, np.nan)
    # The kept galaxies are a prefix of the full ranking: their running sum is
    # the cumulative score of the full ranking.
    cum = np.where(np.isfinite(score), np.cumsum(np.nan_to_num(score)), np.nan)
    return score, cum
