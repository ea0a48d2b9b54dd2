"""Posterior densities of galaxies under a multi-order sky map.

The 3-D density follows the distance ansatz of Singer et al. 2016 (ApJL
829, L15, eq. 2): in the sky cell containing the galaxy,

    dP/dV = p(n) * N / (sqrt(2 pi) sigma) * exp(-(r - mu)^2 / (2 sigma^2)),

with ``p(n)`` the probability per steradian, ``mu``, ``sigma`` (Mpc) and
``N`` (Mpc^-2) the cell's DISTMU, DISTSIGMA and DISTNORM; the result is per
Mpc^3.  That is the quantity ligo.skymap's ``crossmatch`` reports as
``probdensity_vol``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .healpix import _ang2pix_nest_one

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@njit(cache=True)
def locate_cells(pix29: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Row of the map cell containing each depth-29 pixel (-1 outside every cell).

    ``starts``/``ends`` are the cells' depth-29 ranges sorted by start and
    ``rows`` the map rows in that order.
    """
    n = pix29.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        k = np.searchsorted(starts, pix29[i], side="right") - 1
        if k >= 0 and pix29[i] < ends[k]:
            out[i] = rows[k]
    return out


@njit(cache=True)
def posterior_densities(
    cell: np.ndarray,
    dist: np.ndarray,
    probdensity: np.ndarray,
    distmu: np.ndarray,
    distsigma: np.ndarray,
    distnorm: np.ndarray,
    has_distance: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D (per sr) and 3-D (per Mpc^3) posterior density of each galaxy.

    ``cell`` from :func:`locate_cells`; ``dist`` in Mpc (NaN: unknown).
    The 3-D density is NaN without a distance (galaxy or map) and 0 where
    the cell's ansatz is degenerate (infinite or NaN parameters).
    """
    n = cell.shape[0]
    p2 = np.empty(n, dtype=np.float64)
    p3 = np.empty(n, dtype=np.float64)
    for i in range(n):
        p2[i], p3[i] = _densities(cell[i], dist[i], probdensity, distmu, distsigma, distnorm, has_distance)
    return p2, p3


@njit(cache=True, inline="always")
def _densities(c: int, d: float, probdensity: np.ndarray, distmu: np.ndarray, distsigma: np.ndarray,
               distnorm: np.ndarray, has_distance: bool) -> tuple[float, float]:
    """(2-D, 3-D) density of one galaxy in map row ``c`` (-1: outside the map)."""
    if c < 0:
        return 0.0, (0.0 if has_distance and np.isfinite(d) else np.nan)
    d2 = probdensity[c]
    if not has_distance or not np.isfinite(d):
        return d2, np.nan
    mu = distmu[c]
    sg = distsigma[c]
    nm = distnorm[c]
    if not (np.isfinite(mu) and np.isfinite(sg) and np.isfinite(nm)) or sg <= 0.0:
        return d2, 0.0
    x = (d - mu) / sg
    return d2, d2 * nm * _INV_SQRT_2PI / sg * np.exp(-0.5 * x * x)


@njit(cache=True)
def select_sorted(sorted_pix: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Positions in ``sorted_pix`` of the pixels inside canonical ``ranges`` (coarse filter)."""
    total = 0
    lo = np.empty(ranges.shape[0], dtype=np.int64)
    hi = np.empty(ranges.shape[0], dtype=np.int64)
    for r in range(ranges.shape[0]):
        lo[r] = np.searchsorted(sorted_pix, ranges[r, 0], side="left")
        hi[r] = np.searchsorted(sorted_pix, ranges[r, 1], side="left")
        total += hi[r] - lo[r]
    out = np.empty(total, dtype=np.int64)
    k = 0
    for r in range(ranges.shape[0]):
        for j in range(lo[r], hi[r]):
            out[k] = j
            k += 1
    return out


@njit(cache=True, parallel=True)
def evaluate_positions(
    lon: np.ndarray,
    lat: np.ndarray,
    dist: np.ndarray,
    region: np.ndarray,
    cell_starts: np.ndarray,
    cell_ends: np.ndarray,
    cell_rows: np.ndarray,
    probdensity: np.ndarray,
    distmu: np.ndarray,
    distsigma: np.ndarray,
    distnorm: np.ndarray,
    has_distance: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused scan of a catalogue: position -> region test -> cell -> densities.

    One pass per galaxy (threads over galaxies), for catalogues without an
    index.  ``lon``/``lat`` in radians; ``region`` canonical depth-29 ranges
    (empty: the whole sky).  Returns ``(inside, p2, p3)`` as in
    :func:`posterior_densities`; galaxies outside the region get ``inside``
    False and zero densities.
    """
    n = lon.shape[0]
    inside = np.zeros(n, dtype=np.bool_)
    p2 = np.zeros(n, dtype=np.float64)
    p3 = np.zeros(n, dtype=np.float64)
    nreg = region.shape[0]
    rstarts = region[:, 0].copy()
    halfpi = 0.5 * np.pi
    for i in prange(n):
        theta = halfpi - lat[i]
        z = np.cos(theta)
        have_sth = theta < 0.01 or theta > np.pi - 0.01
        sth = np.sin(theta) if have_sth else 0.0
        pix = _ang2pix_nest_one(29, z, sth, have_sth, lon[i])
        if nreg > 0:
            k = np.searchsorted(rstarts, pix, side="right") - 1
            if k < 0 or pix >= region[k, 1]:
                continue
        inside[i] = True
        k = np.searchsorted(cell_starts, pix, side="right") - 1
        c = cell_rows[k] if k >= 0 and pix < cell_ends[k] else -1
        p2[i], p3[i] = _densities(c, dist[i], probdensity, distmu, distsigma, distnorm, has_distance)
    return inside, p2, p3


@njit(cache=True)
def locate_sorted(pix_sorted: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`locate_cells` for pixels already sorted: one merging walk."""
    n = pix_sorted.shape[0]
    m = starts.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    k = 0
    for i in range(n):
        p = pix_sorted[i]
        while k < m and ends[k] <= p:
            k += 1
        if k < m and starts[k] <= p:
            out[i] = rows[k]
    return out


@njit(cache=True)
def exact_partials(values: np.ndarray) -> np.ndarray:
    """Non-overlapping partial sums whose exact sum is the exact sum of ``values``.

    Shewchuk's expansion growth (J. R. Shewchuk 1997, "Adaptive Precision
    Floating-Point Arithmetic and Fast Robust Geometric Predicates", Discrete
    Comput. Geom. 18, 305; the algorithm behind Python's ``math.fsum``).
    ``math.fsum`` of the partials is the correctly rounded sum of ``values``
    whatever their order or grouping: the sum of partials from several
    pieces equals the sum over the whole, bit for bit.  Values must be
    finite.
    """
    partials = np.empty(160, dtype=np.float64)  # 2098 exponents / 53 bits < 40 are ever needed
    n = 0
    for k in range(values.shape[0]):
        x = values[k]
        i = 0
        for j in range(n):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        partials[i] = x
        n = i + 1
    return partials[:n].copy()
