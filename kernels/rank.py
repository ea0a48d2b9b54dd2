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

from gwfollow.kernels.healpix import _ang2pix_nest_one

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


@njit(cache=True, inline="always")
def _pix29_deg(lon: float, lat: float) -> np.int64:
    """Depth-29 NESTED pixel of a position in degrees, converted as
    ``np.radians`` converts (the pixel :func:`lonlat_to_nest` gives)."""
    d2r = np.pi / 180.0
    theta = 0.5 * np.pi - lat * d2r
    z = np.cos(theta)
    have_sth = theta < 0.01 or theta > np.pi - 0.01
    sth = np.sin(theta) if have_sth else 0.0
    return _ang2pix_nest_one(29, z, sth, have_sth, lon * d2r)


@njit(cache=True, inline="always")
def _cell_pos(pix: np.int64, cell_starts: np.ndarray, cell_ends: np.ndarray, lut: np.ndarray,
              lut_order: int) -> np.int64:
    """Sky-order position of the cell holding depth-29 ``pix`` (-1: none);
    ``lut`` as in :func:`evaluate_positions`."""
    ncell = cell_starts.shape[0]
    if lut.shape[0] > 0:
        # The cells that can hold pix start at lut[q]: walk the few of them.
        q = pix >> (2 * (29 - lut_order))
        k = lut[q]
        hi = lut[q + 1] + 1
        if hi > ncell:
            hi = ncell
        if hi - k > 8:
            k = k + np.searchsorted(cell_ends[k:hi], pix, side="right")
        else:
            while k < hi and cell_ends[k] <= pix:
                k += 1
        return k if k < ncell and cell_starts[k] <= pix else -1
    k = np.searchsorted(cell_starts, pix, side="right") - 1
    return k if k >= 0 and pix < cell_ends[k] else -1


@njit(cache=True, inline="always")
def _cell_of(pix: np.int64, cell_starts: np.ndarray, cell_ends: np.ndarray, cell_rows: np.ndarray,
             lut: np.ndarray, lut_order: int) -> np.int64:
    """Map row of the cell holding depth-29 ``pix`` (-1: none)."""
    k = _cell_pos(pix, cell_starts, cell_ends, lut, lut_order)
    return cell_rows[k] if k >= 0 else -1


@njit(cache=True)
def density_table(cell_rows: np.ndarray, probdensity: np.ndarray, distmu: np.ndarray, distsigma: np.ndarray,
                  distnorm: np.ndarray, has_distance: bool) -> np.ndarray:
    """Per-cell factors of the 3-D density, in sky order (rows ``cell_rows``).

    Row ``k``: ``(p, p * N / sqrt(2 pi) / sigma, mu, sigma)``, the first
    factor formed in the order :func:`_densities` forms it (so the density
    is the same double); ``sigma`` is -1 for a degenerate ansatz (infinite
    or NaN parameters, ``sigma <= 0``).  One 32-byte row per cell: a galaxy
    reads one cache line of the map instead of five.
    """
    m = cell_rows.shape[0]
    t = np.zeros((m, 4), dtype=np.float64)
    for k in range(m):
        c = cell_rows[k]
        d2 = probdensity[c]
        t[k, 0] = d2
        t[k, 3] = -1.0
        if has_distance:
            mu = distmu[c]
            sg = distsigma[c]
            nm = distnorm[c]
            if np.isfinite(mu) and np.isfinite(sg) and np.isfinite(nm) and sg > 0.0:
                t[k, 1] = d2 * nm * _INV_SQRT_2PI / sg
                t[k, 2] = mu
                t[k, 3] = sg
    return t


@njit(cache=True, inline="always")
def _densities_tab(k: int, d: float, table: np.ndarray, has_distance: bool) -> tuple[float, float]:
    """:func:`_densities` from a :func:`density_table` row (``k`` = -1: outside the map)."""
    if k < 0:
        return 0.0, (0.0 if has_distance and np.isfinite(d) else np.nan)
    d2 = table[k, 0]
    if not has_distance or not np.isfinite(d):
        return d2, np.nan
    sg = table[k, 3]
    if sg < 0.0:
        return d2, 0.0
    x = (d - table[k, 2]) / sg
    return d2, table[k, 1] * np.exp(-0.5 * x * x)


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
    lut: np.ndarray,
    lut_order: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused scan of a catalogue: position -> region test -> cell -> densities.

    One pass per galaxy (threads over galaxies), for catalogues without an
    index.  ``lon``/``lat`` in degrees (converted here, as ``np.radians``
    does, to spare two passes over the columns); ``region`` canonical depth-29 ranges
    (empty: the whole sky).  ``lut`` (from :func:`cell_lookup` at
    ``lut_order``, or empty) narrows the search for each galaxy's map cell
    to the few cells of its order-``lut_order`` pixel.  Returns
    ``(inside, p2, p3)`` as in
    :func:`posterior_densities`; galaxies outside the region get ``inside``
    False and zero densities.
    """
    n = lon.shape[0]
    inside = np.zeros(n, dtype=np.bool_)
    p2 = np.zeros(n, dtype=np.float64)
    p3 = np.zeros(n, dtype=np.float64)
    nreg = region.shape[0]
    rstarts = region[:, 0].copy()
    for i in prange(n):
        pix = _pix29_deg(lon[i], lat[i])
        if nreg > 0:
            k = np.searchsorted(rstarts, pix, side="right") - 1
            if k < 0 or pix >= region[k, 1]:
                continue
        inside[i] = True
        c = _cell_of(pix, cell_starts, cell_ends, cell_rows, lut, lut_order)
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


#: 32-bit limbs of a fixed-point accumulator spanning every finite double:
#: bit 0 is 2**-1074 (the smallest subnormal); 2098 bits + carries.
SUM_LIMBS = 70


@njit(cache=True)
def exact_sum_limbs(values: np.ndarray) -> np.ndarray:
    """The exact sum of the finite ``values`` as fixed-point limbs (a
    "superaccumulator", cf. Kulisch; Neal 2015, arXiv:1505.05571).

    Each double is ``m * 2**(p - 1074)`` with an integer mantissa ``m`` <
    2**53; ``m`` is added, shifted by ``p % 32``, into the 32-bit limbs from
    ``p // 32`` on.  Integer additions are exact and associative, so the
    limbs of several pieces add up to the limbs of the whole: the sum does
    not depend on order or grouping.  Non-finite values are skipped.
    Returns ``(2, SUM_LIMBS)`` int64: positive and negative parts, carries
    propagated (each limb in [0, 2**32)); :func:`gwfollow.targets.rank.limbs_to_float`
    rounds them correctly to one double.
    """
    acc = np.zeros((2, SUM_LIMBS + 1), dtype=np.int64)
    bits = values.view(np.int64)
    pending = 0
    for k in range(values.shape[0]):
        if _add_bits(acc, bits[k]):
            pending += 1
            if pending == 1 << 28:  # each add is < 2**33: carry before int64 could overflow
                _carry(acc)
                pending = 0
    _carry(acc)
    return acc[:, :SUM_LIMBS].copy()


@njit(cache=True, inline="always")
def _add_bits(acc: np.ndarray, b: np.int64) -> bool:
    """Add the double whose bits are ``b`` into limbs ``acc`` (see
    :func:`exact_sum_limbs`); False (nothing added) for inf and NaN."""
    e = (b >> 52) & 0x7FF
    if e == 0x7FF:  # inf or NaN
        return False
    m = b & 0xFFFFFFFFFFFFF
    if e > 0:
        m |= 0x10000000000000
        p = e - 1
    else:
        p = 0
    s = 1 if b < 0 else 0
    limb = p >> 5
    off = p & 31
    lo = (m & 0xFFFFFFFF) << off
    hi = (m >> 32) << off
    acc[s, limb] += lo & 0xFFFFFFFF
    acc[s, limb + 1] += (lo >> 32) + (hi & 0xFFFFFFFF)
    acc[s, limb + 2] += hi >> 32
    return True


@njit(cache=True)
def _carry(acc: np.ndarray) -> None:
    for s in range(acc.shape[0]):
        c = 0
        for i in range(acc.shape[1]):
            v = acc[s, i] + c
            acc[s, i] = v & 0xFFFFFFFF
            c = v >> 32


@njit(cache=True, inline="always")
def _worse(ca: int, pa: float, sa: float, cb: int, pb: float, sb: float) -> bool:
    """Is key a = (class, primary, secondary) ranked after key b?  Class 0
    (with a score) before class 1; then primary, then secondary, descending."""
    if ca != cb:
        return ca > cb
    if pa != pb:
        return pa < pb
    return sa < sb


@njit(cache=True, inline="always")
def _key(raw: np.ndarray, p2: np.ndarray, i: int) -> tuple[int, float, float]:
    """(class, primary, secondary) of galaxy ``i`` for :func:`top_positions`."""
    if np.isfinite(raw[i]):
        return 0, raw[i], p2[i]
    return 1, p2[i], 0.0


@njit(cache=True)
def top_positions(raw: np.ndarray, p2: np.ndarray, k: int) -> np.ndarray:
    """Positions (ascending) of the best ``k`` galaxies and of every galaxy
    tied with the ``k``-th.

    Order: galaxies with a finite ``raw`` score first, by ``raw`` then
    ``p2`` descending; the others by ``p2`` descending.  One pass with a
    bounded heap whose root is the worst kept key (O(n log k)), then one
    pass for the ties.
    """
    n = raw.shape[0]
    if k >= n:
        return np.arange(n)
    out_empty = np.empty(0, dtype=np.int64)
    if k <= 0:
        return out_empty
    hc = np.empty(k, dtype=np.int64)
    hp = np.empty(k, dtype=np.float64)
    hs = np.empty(k, dtype=np.float64)
    size = 0
    for i in range(n):
        c, pv, sv = _key(raw, p2, i)
        if size < k:
            # sift up: the root is the worst key
            j = size
            size += 1
            while j > 0:
                parent = (j - 1) >> 1
                if _worse(c, pv, sv, hc[parent], hp[parent], hs[parent]):
                    hc[j], hp[j], hs[j] = hc[parent], hp[parent], hs[parent]
                    j = parent
                else:
                    break
            hc[j], hp[j], hs[j] = c, pv, sv
        elif _worse(hc[0], hp[0], hs[0], c, pv, sv):
            # replace the root, sift down
            j = 0
            while True:
                left = 2 * j + 1
                if left >= k:
                    break
                w = left
                right = left + 1
                if right < k and _worse(hc[right], hp[right], hs[right], hc[left], hp[left], hs[left]):
                    w = right
                if _worse(hc[w], hp[w], hs[w], c, pv, sv):
                    hc[j], hp[j], hs[j] = hc[w], hp[w], hs[w]
                    j = w
                else:
                    break
            hc[j], hp[j], hs[j] = c, pv, sv
    tc, tp, ts = hc[0], hp[0], hs[0]
    keep = np.zeros(n, dtype=np.bool_)
    m = 0
    for i in range(n):
        c, pv, sv = _key(raw, p2, i)
        if not _worse(c, pv, sv, tc, tp, ts):
            keep[i] = True
            m += 1
    out = np.empty(m, dtype=np.int64)
    j = 0
    for i in range(n):
        if keep[i]:
            out[j] = i
            j += 1
    return out


@njit(cache=True)
def cell_lookup(cell_ends: np.ndarray, order: int) -> np.ndarray:
    """For each pixel ``q`` at ``order``, the position of the first cell
    (sorted by start) ending after the pixel's first depth-29 pixel; one
    merging walk.  Entry ``12 * 4**order`` is the number of cells."""
    m = 12 << (2 * order)
    shift = 2 * (29 - order)
    nc = cell_ends.shape[0]
    lut = np.empty(m + 1, dtype=np.int32)
    k = 0
    for q in range(m):
        qs = np.int64(q) << shift
        while k < nc and cell_ends[k] <= qs:
            k += 1
        lut[q] = k
    lut[m] = nc
    return lut


@njit(cache=True, inline="always")
def _worse5(ca: int, pa: float, sa: float, xa: np.int64, ia: np.int64,
            cb: int, pb: float, sb: float, xb: np.int64, ib: np.int64) -> bool:
    """:func:`_worse` with the final tie-breaks of a ranking: sky pixel, then
    catalogue position, ascending.  A total order: no two galaxies tie."""
    if ca != cb:
        return ca > cb
    if pa != pb:
        return pa < pb
    if sa != sb:
        return sa < sb
    if xa != xb:
        return xa > xb
    return ia > ib


@njit(cache=True, parallel=True)
def scan_top_sky(
    lon: np.ndarray,
    lat: np.ndarray,
    dist: np.ndarray,
    cell_starts: np.ndarray,
    cell_ends: np.ndarray,
    table: np.ndarray,
    has_distance: bool,
    lut: np.ndarray,
    lut_order: int,
    k: int,
    nchunks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole-sky ranking of a catalogue without an index, in one pass and
    without arrays the size of the catalogue.

    ``table`` from :func:`density_table` for the cells ``cell_starts`` /
    ``cell_ends`` (sky order).  Each galaxy's densities are those of
    :func:`evaluate_positions` (the same doubles); its
    score is the 3-D density (2-D without distances).  ``nchunks`` slices of
    the catalogue (threads over slices) each keep their best ``k`` galaxies
    in a bounded heap under the ranking's total order (score, 2-D density,
    depth-29 pixel, catalogue position: :func:`_worse5`) and the exact sum of
    their scores (:func:`exact_sum_limbs`).  Both results are independent of
    the slicing and of the thread count: the limbs are exact and the order
    is total.

    Returns
    -------
    pos : ndarray of int64
        Catalogue positions of the best ``k`` galaxies (fewer if the
        catalogue is smaller), best first.
    p2, p3 : ndarray of float64
        Their 2-D (per sr) and 3-D (per Mpc^3) densities.
    limbs : (2, SUM_LIMBS) int64
        Exact sum of all finite scores, as :func:`exact_sum_limbs` returns it.
    """
    n = lon.shape[0]
    kk = max(k, 0)
    hc = np.empty((nchunks, kk), dtype=np.int64)
    hp = np.empty((nchunks, kk), dtype=np.float64)
    hs = np.empty((nchunks, kk), dtype=np.float64)
    hx = np.empty((nchunks, kk), dtype=np.int64)
    hi = np.empty((nchunks, kk), dtype=np.int64)
    h2 = np.empty((nchunks, kk), dtype=np.float64)
    h3 = np.empty((nchunks, kk), dtype=np.float64)
    sizes = np.zeros(nchunks, dtype=np.int64)
    acc = np.zeros((nchunks, 2, SUM_LIMBS + 1), dtype=np.int64)
    for c in prange(nchunks):
        lo = c * n // nchunks
        up = (c + 1) * n // nchunks
        a = acc[c]
        fbuf = np.empty(1, dtype=np.float64)
        ibuf = fbuf.view(np.int64)
        pending = 0
        size = 0
        for i in range(lo, up):
            pix = _pix29_deg(lon[i], lat[i])
            cell = _cell_pos(pix, cell_starts, cell_ends, lut, lut_order)
            d2, d3 = _densities_tab(cell, dist[i], table, has_distance)
            raw = d3 if has_distance else d2
            if np.isfinite(raw):
                cls, pv, sv = 0, raw, d2
                fbuf[0] = raw  # the score's bits through a one-element view (no scalar bitcast in numba)
                _add_bits(a, ibuf[0])
                pending += 1
                if pending == 1 << 28:
                    _carry(a)
                    pending = 0
            else:
                cls, pv, sv = 1, d2, 0.0
            if kk == 0:
                continue
            if size < kk:
                j = size
                size += 1
                while j > 0:
                    parent = (j - 1) >> 1
                    if _worse5(cls, pv, sv, pix, i, hc[c, parent], hp[c, parent], hs[c, parent], hx[c, parent],
                               hi[c, parent]):
                        hc[c, j], hp[c, j], hs[c, j], hx[c, j], hi[c, j] = (
                            hc[c, parent], hp[c, parent], hs[c, parent], hx[c, parent], hi[c, parent])
                        h2[c, j], h3[c, j] = h2[c, parent], h3[c, parent]
                        j = parent
                    else:
                        break
                hc[c, j], hp[c, j], hs[c, j], hx[c, j], hi[c, j], h2[c, j], h3[c, j] = cls, pv, sv, pix, i, d2, d3
            elif _worse5(hc[c, 0], hp[c, 0], hs[c, 0], hx[c, 0], hi[c, 0], cls, pv, sv, pix, i):
                j = 0
                while True:
                    left = 2 * j + 1
                    if left >= kk:
                        break
                    w = left
                    right = left + 1
                    if right < kk and _worse5(hc[c, right], hp[c, right], hs[c, right], hx[c, right], hi[c, right],
                                              hc[c, left], hp[c, left], hs[c, left], hx[c, left], hi[c, left]):
                        w = right
                    if _worse5(hc[c, w], hp[c, w], hs[c, w], hx[c, w], hi[c, w], cls, pv, sv, pix, i):
                        hc[c, j], hp[c, j], hs[c, j], hx[c, j], hi[c, j] = (
                            hc[c, w], hp[c, w], hs[c, w], hx[c, w], hi[c, w])
                        h2[c, j], h3[c, j] = h2[c, w], h3[c, w]
                        j = w
                    else:
                        break
                hc[c, j], hp[c, j], hs[c, j], hx[c, j], hi[c, j], h2[c, j], h3[c, j] = cls, pv, sv, pix, i, d2, d3
        _carry(a)
        sizes[c] = size
    # Merge: the best k of the slices' best k, by the same total order.
    m = 0
    for c in range(nchunks):
        m += sizes[c]
    fc = np.empty(m, dtype=np.int64)
    fp = np.empty(m, dtype=np.float64)
    fs = np.empty(m, dtype=np.float64)
    fx = np.empty(m, dtype=np.int64)
    fi = np.empty(m, dtype=np.int64)
    f2 = np.empty(m, dtype=np.float64)
    f3 = np.empty(m, dtype=np.float64)
    j = 0
    for c in range(nchunks):
        for t in range(sizes[c]):
            fc[j], fp[j], fs[j], fx[j], fi[j], f2[j], f3[j] = hc[c, t], hp[c, t], hs[c, t], hx[c, t], hi[c, t], \
                h2[c, t], h3[c, t]
            j += 1
    order = _sort_by_worse5(fc, fp, fs, fx, fi)
    keep = min(kk, m)
    pos = np.empty(keep, dtype=np.int64)
    p2 = np.empty(keep, dtype=np.float64)
    p3 = np.empty(keep, dtype=np.float64)
    for t in range(keep):
        pos[t] = fi[order[t]]
        p2[t] = f2[order[t]]
        p3[t] = f3[order[t]]
    total = np.zeros((2, SUM_LIMBS + 1), dtype=np.int64)
    for c in range(nchunks):
        for sgn in range(2):
            for b in range(SUM_LIMBS + 1):
                total[sgn, b] += acc[c, sgn, b]
    _carry(total)
    return pos, p2, p3, total[:, :SUM_LIMBS].copy()


@njit(cache=True)
def _sort_by_worse5(fc: np.ndarray, fp: np.ndarray, fs: np.ndarray, fx: np.ndarray, fi: np.ndarray) -> np.ndarray:
    """Indices ordering candidates best first under :func:`_worse5` (bottom-up merge sort)."""
    m = fc.shape[0]
    a = np.arange(m)
    b = np.empty(m, dtype=np.int64)
    width = 1
    while width < m:
        for lo in range(0, m, 2 * width):
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i, j, t = lo, mid, lo
            while i < mid and j < hi:
                x, y = a[i], a[j]
                if _worse5(fc[x], fp[x], fs[x], fx[x], fi[x], fc[y], fp[y], fs[y], fx[y], fi[y]):
                    b[t] = y
                    j += 1
                else:
                    b[t] = x
                    i += 1
                t += 1
            while i < mid:
                b[t] = a[i]
                i += 1
                t += 1
            while j < hi:
                b[t] = a[j]
                j += 1
                t += 1
        a, b = b, a
        width *= 2
    return a
