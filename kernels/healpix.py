"""HEALPix index kernels for NESTED multi-order cells.

Pure numpy-in / numpy-out functions compiled with numba.  Conventions follow
the HEALPix papers and the IVOA MOC 2.0 recommendation:

* Górski et al. 2005, ApJ 622, 759 (HEALPix: pixelisation, NESTED scheme,
  the ``ang2pix`` projection used below);
* IVOA MOC 2.0 (2022), section 4.3: ``uniq = 4 * 4**order + ipix`` and the
  depth-29 range representation ``[ipix << 2(29-order), (ipix+1) << 2(29-order))``.

Angles are radians.  Orders are ``int64`` in ``[0, 29]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from gwfollow.kernels.sort import argsort_nonneg_i64, merge_sorted_runs

MAX_ORDER = 29
"""Deepest HEALPix order a MOC may use (IVOA MOC 2.0)."""

_TWOTHIRD = 2.0 / 3.0
_INV_HALFPI = 2.0 / np.pi


@njit(cache=True)
def _order_of_uniq(u: int) -> int:
    # uniq = 4 * 4**order + ipix with 0 <= ipix < 12 * 4**order, so
    # 4**(order+1) <= uniq < 16 * 4**order: order = floor(log4(uniq)) - 1,
    # i.e. (bit_length(uniq) - 1) // 2 - 1.  Below 2**53 the conversion to
    # float is exact and frexp's exponent is the bit length.
    if u < (np.int64(1) << 53):
        _, e = math.frexp(float(u))
        return (e - 1) // 2 - 1
    n = 0
    v = u >> 2
    while v >= 4:
        v >>= 2
        n += 1
    return n


@njit(cache=True)
def uniq_to_order_ipix(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split NUNIQ indices into (order, ipix).

    Parameters
    ----------
    uniq : ndarray of int64
        NUNIQ cell indices (each ``>= 4``).

    Returns
    -------
    order, ipix : ndarray of int64
        HEALPix order and NESTED pixel index of each cell.  Invalid values
        (``uniq < 4`` or an order above 29) give ``order = -1``.
    """
    n = uniq.shape[0]
    order = np.empty(n, dtype=np.int64)
    ipix = np.empty(n, dtype=np.int64)
    # Cells of one order come in runs: while uniq stays in the last order's
    # band [4**(o+1), 4**(o+2)) the order is known without computing it.
    o = -1
    lo = np.int64(0)
    hi = np.int64(0)
    for i in range(n):
        u = np.int64(uniq[i])
        if u >= lo and u < hi:
            order[i] = o
            ipix[i] = u - lo
            continue
        if u < 4:
            order[i] = -1
            ipix[i] = -1
            continue
        oi = _order_of_uniq(u)
        if oi > MAX_ORDER:
            order[i] = -1
            ipix[i] = -1
            continue
        o = oi
        lo = np.int64(4) << (2 * o)
        hi = lo << 2  # at most 2**62 (order 29): no overflow
        order[i] = o
        ipix[i] = u - lo
    return order, ipix


@njit(cache=True)
def order_ipix_to_uniq(order: np.ndarray, ipix: np.ndarray) -> np.ndarray:
    """Combine (order, ipix) into NUNIQ indices (``4 * 4**order + ipix``)."""
    n = order.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = (np.int64(4) << (2 * np.int64(order[i]))) + np.int64(ipix[i])
    return out


@njit(cache=True)
def uniq_to_ranges(uniq: np.ndarray) -> np.ndarray:
    """Depth-29 half-open ranges ``[start, end)`` of NUNIQ cells, in input order.

    Returns an ``(n, 2)`` int64 array.  Cells are not sorted nor merged; see
    :func:`gwfollow.kernels.ranges.normalize` for that.
    """
    n = uniq.shape[0]
    out = np.empty((n, 2), dtype=np.int64)
    order, ipix = uniq_to_order_ipix(uniq)
    for i in range(n):
        s = 2 * (MAX_ORDER - order[i])
        out[i, 0] = ipix[i] << s
        out[i, 1] = (ipix[i] + 1) << s
    return out


@njit(cache=True)
def check_cells(uniq: np.ndarray) -> tuple[int, int]:
    """Validate a multi-order cell list.

    Returns ``(code, index)``: code 0 when every cell is a valid NUNIQ index
    and no two cells overlap; 1 when cell ``index`` is not a valid NUNIQ
    index; 2 when cell ``index`` overlaps another cell (after sorting by
    depth-29 start, the reported index is in input order).
    """
    n = uniq.shape[0]
    order, ipix = uniq_to_order_ipix(uniq)
    for i in range(n):
        if order[i] < 0 or ipix[i] < 0 or ipix[i] >= 12 * (np.int64(1) << (2 * order[i])):
            return 1, i
    rng = uniq_to_ranges(uniq)
    idx = np.argsort(rng[:, 0])
    for k in range(1, n):
        if rng[idx[k], 0] < rng[idx[k - 1], 1]:
            return 2, idx[k]
    return 0, -1


@njit(cache=True)
def cells_cover_sphere(uniq: np.ndarray) -> bool:
    """True when non-overlapping NUNIQ cells tile the whole sphere."""
    order, _ = uniq_to_order_ipix(uniq)
    total = np.int64(0)
    for i in range(order.shape[0]):
        total += np.int64(1) << (2 * (MAX_ORDER - order[i]))
    return total == 12 * (np.int64(1) << (2 * MAX_ORDER))


@njit(cache=True)
def _spread_bits(v: np.int64) -> np.int64:
    # Interleave: bit k of v goes to bit 2k of the result (Morton code).
    v = v & np.int64(0x00000000FFFFFFFF)
    v = (v | (v << 16)) & np.int64(0x0000FFFF0000FFFF)
    v = (v | (v << 8)) & np.int64(0x00FF00FF00FF00FF)
    v = (v | (v << 4)) & np.int64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << 2)) & np.int64(0x3333333333333333)
    v = (v | (v << 1)) & np.int64(0x5555555555555555)
    return v


@njit(cache=True)
def _compress_bits(v: np.int64) -> np.int64:
    v = v & np.int64(0x5555555555555555)
    v = (v | (v >> 1)) & np.int64(0x3333333333333333)
    v = (v | (v >> 2)) & np.int64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> 4)) & np.int64(0x00FF00FF00FF00FF)
    v = (v | (v >> 8)) & np.int64(0x0000FFFF0000FFFF)
    v = (v | (v >> 16)) & np.int64(0x00000000FFFFFFFF)
    return v


@njit(cache=True)
def _xyf2nest(order: int, ix: np.int64, iy: np.int64, face: np.int64) -> np.int64:
    return (face << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)


@njit(cache=True)
def _ang2pix_nest_one(order: int, z: float, sth: float, have_sth: bool, phi: float) -> np.int64:
    # Górski et al. 2005, section 4 (equatorial and polar zones), NESTED scheme.
    nside = np.int64(1) << order
    za = abs(z)
    tt = phi * _INV_HALFPI
    if not (0.0 <= tt < 4.0):  # x % 4.0 is x itself in [0, 4): skip the costly modulo there
        tt = tt % 4.0
        if tt < 0.0:
            tt += 4.0
    if za <= _TWOTHIRD:
        temp1 = nside * (0.5 + tt)
        temp2 = nside * (z * 0.75)
        jp = np.int64(temp1 - temp2)
        jm = np.int64(temp1 + temp2)
        ifp = jp >> order
        ifm = jm >> order
        if ifp == ifm:
            face = ifp | 4
        elif ifp < ifm:
            face = ifp
        else:
            face = ifm + 8
        ix = jm & (nside - 1)
        iy = nside - (jp & (nside - 1)) - 1
        return _xyf2nest(order, ix, iy, face)
    ntt = min(3, np.int64(tt))
    tp = tt - ntt
    if za < 0.99 or not have_sth:
        tmp = nside * np.sqrt(3.0 * (1.0 - za))
    else:
        tmp = nside * sth / np.sqrt((1.0 + za) / 3.0)
    jp = min(np.int64(tp * tmp), nside - 1)
    jm = min(np.int64((1.0 - tp) * tmp), nside - 1)
    if z >= 0:
        return _xyf2nest(order, nside - jm - 1, nside - jp - 1, ntt)
    return _xyf2nest(order, jp, jm, ntt + 8)


@njit(cache=True)
def lonlat_to_nest(order: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """NESTED pixel index at ``order`` of points given in radians.

    Parameters
    ----------
    order : int
        HEALPix order, 0..29.
    lon, lat : ndarray of float64
        Longitude (right ascension) and latitude (declination), radians.

    Returns
    -------
    ndarray of int64
        NESTED pixel indices; the same values as healpy's
        ``ang2pix(2**order, pi/2 - lat, lon, nest=True)``.
    """
    n = lon.shape[0]
    out = np.empty(n, dtype=np.int64)
    halfpi = 0.5 * np.pi
    for i in range(n):
        theta = halfpi - lat[i]
        z = np.cos(theta)
        have_sth = theta < 0.01 or theta > np.pi - 0.01
        sth = np.sin(theta) if have_sth else 0.0
        out[i] = _ang2pix_nest_one(order, z, sth, have_sth, lon[i])
    return out


@njit(cache=True)
def lonlat_deg_to_nest(order: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """:func:`lonlat_to_nest` for degrees, converted per point as ``np.radians``
    does (``x * (pi / 180)``, the same doubles), with no temporary arrays."""
    n = lon.shape[0]
    out = np.empty(n, dtype=np.int64)
    halfpi = 0.5 * np.pi
    d2r = np.pi / 180.0
    for i in range(n):
        theta = halfpi - lat[i] * d2r
        z = np.cos(theta)
        have_sth = theta < 0.01 or theta > np.pi - 0.01
        sth = np.sin(theta) if have_sth else 0.0
        out[i] = _ang2pix_nest_one(order, z, sth, have_sth, lon[i] * d2r)
    return out


@njit(cache=True)
def nest_to_ring_order(order: int) -> np.ndarray:
    """Permutation ``p`` with ``nested_values = ring_values[p]`` at ``order``.

    Element ``k`` is the RING index of NESTED pixel ``k`` (HEALPix
    ``nest2ring``), computed for all ``12 * 4**order`` pixels at once.
    """
    nside = np.int64(1) << order
    npface = nside * nside
    npix = 12 * npface
    ncap = 2 * nside * (nside - 1)
    nl4 = 4 * nside
    out = np.empty(npix, dtype=np.int64)
    # Face layout (Górski et al. 2005, fig. 4): row and column of each base pixel.
    jrll = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
    jpll = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)
    for pix in range(npix):
        face = pix >> (2 * order)
        p = pix & (npface - 1)
        ix = _compress_bits(p)
        iy = _compress_bits(p >> 1)
        jr = jrll[face] * nside - ix - iy - 1
        if jr < nside:
            nr = jr
            start = 2 * nr * (nr - 1)
            kshift = 0
        elif jr > 3 * nside:
            nr = nl4 - jr
            start = npix - 2 * (nr + 1) * nr
            kshift = 0
        else:
            nr = nside
            start = ncap + (jr - nside) * nl4
            kshift = (jr - nside) & 1
        jp = (jpll[face] * nr + ix - iy + 1 + kshift) // 2
        if jp > nl4:
            jp -= nl4
        if jp < 1:
            jp += nl4
        out[pix] = start + jp - 1
    return out


@njit(cache=True)
def prepare_cells(uniq: np.ndarray):
    """Validate NUNIQ cells and order them along the sky, in one pass.

    Returns
    -------
    code, where : int
        0 when valid; 1 when row ``where`` is not a NUNIQ index; 2 when row
        ``where`` overlaps another cell.
    order, ipix : ndarray of int64
    ranges : (n, 2) int64
        Depth-29 range of each cell, in row order.
    by_start : ndarray of int64
        Row indices sorted by range start (a radix sort: the low
        ``2 * (29 - max_order)`` bits of every start are zero and skipped).
    """
    n = uniq.shape[0]
    order, ipix = uniq_to_order_ipix(uniq)
    rng = np.empty((n, 2), dtype=np.int64)
    empty = np.empty(0, dtype=np.int64)
    # Maps written in NUNIQ order (as LVK pipelines write them) are a few
    # runs, one per order, each ascending on the sky: a k-way merge of the
    # runs replaces the radix sort.
    increasing = True
    runs = np.empty(MAX_ORDER + 2, dtype=np.int64)
    nruns = 0
    for i in range(n):
        o = order[i]
        if o < 0:  # an order outside 0..29; within its band the pixel index is valid
            return 1, i, order, ipix, rng, empty
        s = 2 * (MAX_ORDER - o)
        rng[i, 0] = ipix[i] << s
        rng[i, 1] = (ipix[i] + 1) << s
        if increasing and i > 0 and uniq[i] <= uniq[i - 1]:
            increasing = False
        if increasing and (i == 0 or o != order[i - 1]):
            runs[nruns] = i
            nruns += 1
    if increasing and n > 0 and nruns <= 12:
        runs[nruns] = n
        by_start = merge_sorted_runs(rng[:, 0], runs[: nruns + 1])  # a strided view: no copy
    else:
        by_start = argsort_nonneg_i64(rng[:, 0].copy())
    for k in range(1, n):
        if rng[by_start[k], 0] < rng[by_start[k - 1], 1]:
            return 2, by_start[k], order, ipix, rng, by_start
    return 0, -1, order, ipix, rng, by_start
