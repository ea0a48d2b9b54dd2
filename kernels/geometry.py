"""Spherical caps on the HEALPix NESTED grid.

Pure numpy-in / numpy-out functions compiled with numba.  Angles are
radians; directions are (longitude, latitude) = (right ascension,
declination).

Cell selection rule ("centre inside")
    A cell at ``order`` belongs to the cap of centre ``c`` and angular
    radius ``r`` when its centre ``p`` satisfies ``p . c >= cos(r)``: the
    semantics of ``healpy.query_disc(..., inclusive=False)``.  Cells that
    straddle the boundary are in or out by their centre alone, so the
    selected region differs from the exact cap by less than one cell
    radius (:func:`max_pixrad`) all along its edge, and a cap smaller than
    a cell may select no cell at all.

The selection descends the NESTED hierarchy from the 12 base cells (the
approach of healpy's ``query_disc`` and cds-moc-rust's cone coverage): a
coarse cell whose every point is farther than ``max_pixrad`` inside (or
outside) the cap is taken (or dropped) whole, the others are split.  The
work is proportional to the number of cells along the cap's edge, and the
ranges come out sorted, so the result is canonical without a sort.

References: Górski et al. 2005, ApJ 622, 759 (pixel centres, section 4 and
the ``pix2ang`` of the HEALPix library); the cell radius bound is
``T_Healpix_Base::max_pixrad`` of HEALPix C++.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from gwfollow.kernels.healpix import MAX_ORDER, _compress_bits
from gwfollow.kernels.ranges import NPIX29

_HALFPI = 0.5 * math.pi
# Largest error of arccos(dot) near dot = 1 (~1.5e-8 rad) and of the dot
# product itself, with room to spare: cells are only decided "whole" when
# they clear the boundary by this much more than their radius.
_ANGLE_SLACK = 1e-7
# max_pixrad is the centre-to-corner distance; HEALPix cell edges are not
# great circles, so the bound used to take or drop a whole cell is doubled.
_RADIUS_SAFETY = 2.0


@njit(cache=True)
def _face_row(face: np.int64) -> np.int64:
    # Górski et al. 2005, fig. 4: ring row of each base cell's south corner.
    return 2 + face // 4


@njit(cache=True)
def _face_col(face: np.int64) -> np.int64:
    # Column (in units of pi/4) of each base cell: 1,3,5,7 / 0,2,4,6 / 1,3,5,7.
    c = 2 * (face % 4)
    return c if face // 4 == 1 else c + 1


@njit(cache=True)
def _centre_vec(order: int, pix: np.int64) -> tuple[float, float, float]:
    # HEALPix pix2loc (NESTED), returning the unit vector of the cell centre.
    nside = np.int64(1) << order
    npface = nside * nside
    face = pix >> (2 * order)
    p = pix & (npface - 1)
    ix = _compress_bits(p)
    iy = _compress_bits(p >> 1)
    jr = _face_row(face) * nside - ix - iy - 1
    if jr < nside:
        nr = jr
        tmp = (float(nr) * float(nr)) / (3.0 * float(npface))
        z = 1.0 - tmp
        sth = math.sqrt(tmp * (2.0 - tmp))
        kshift = 0
    elif jr > 3 * nside:
        nr = 4 * nside - jr
        tmp = (float(nr) * float(nr)) / (3.0 * float(npface))
        z = tmp - 1.0
        sth = math.sqrt(tmp * (2.0 - tmp))
        kshift = 0
    else:
        nr = nside
        z = float(2 * nside - jr) * (2.0 / (3.0 * float(nside)))
        sth = math.sqrt((1.0 - z) * (1.0 + z))
        kshift = (jr - nside) & 1
    jp = (_face_col(face) * nr + ix - iy + 1 + kshift) // 2
    if jp > 4 * nside:
        jp -= 4 * nside
    if jp < 1:
        jp += 4 * nside
    phi = (float(jp) - (kshift + 1) * 0.5) * (_HALFPI / float(nr))
    return sth * math.cos(phi), sth * math.sin(phi), z


@njit(cache=True)
def nest_to_lonlat(order: int, ipix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of NESTED cells at ``order``.

    Parameters
    ----------
    order : int
        HEALPix order, 0..29.
    ipix : ndarray of int64
        NESTED pixel indices.

    Returns
    -------
    lon, lat : ndarray of float64
        Longitude in [0, 2 pi) and latitude, radians; the same centres as
        healpy's ``pix2ang(2**order, ipix, nest=True)`` (``lat = pi/2 - theta``).
    """
    n = ipix.shape[0]
    lon = np.empty(n, dtype=np.float64)
    lat = np.empty(n, dtype=np.float64)
    for i in range(n):
        x, y, z = _centre_vec(order, np.int64(ipix[i]))
        a = math.atan2(y, x)
        lon[i] = a + 2.0 * math.pi if a < 0.0 else a
        lat[i] = math.atan2(z, math.sqrt(x * x + y * y))
    return lon, lat


@njit(cache=True)
def max_pixrad(order: int) -> float:
    """Largest angular distance from a cell's centre to its corners, radians.

    HEALPix C++ ``max_pixrad``: the distance between the points
    ``(z = 2/3, phi = pi / (4 nside))`` and ``(z = 1 - (1 - 1/nside)**2 / 3, phi = 0)``.
    """
    nside = float(np.int64(1) << order)
    za = 2.0 / 3.0
    pa = math.pi / (4.0 * nside)
    t1 = 1.0 - 1.0 / nside
    zb = 1.0 - t1 * t1 / 3.0
    sa = math.sqrt((1.0 - za) * (1.0 + za))
    sb = math.sqrt((1.0 - zb) * (1.0 + zb))
    # Angle between the two unit vectors, by atan2 of |a x b| and a . b.
    ax, ay = sa * math.cos(pa), sa * math.sin(pa)
    bx, by = sb, 0.0
    cx = ay * zb - za * by
    cy = za * bx - ax * zb
    cz = ax * by - ay * bx
    return math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), ax * bx + ay * by + za * zb)


@njit(cache=True)
def _emit(out: np.ndarray, k: int, s: np.int64, e: np.int64) -> tuple[np.ndarray, int]:
    # Append [s, e) to the sorted output, merging with an adjacent last range.
    if k > 0 and out[k - 1, 1] == s:
        out[k - 1, 1] = e
        return out, k
    if k == out.shape[0]:
        bigger = np.empty((2 * out.shape[0], 2), dtype=np.int64)
        bigger[:k] = out[:k]
        out = bigger
    out[k, 0] = s
    out[k, 1] = e
    return out, k + 1


@njit(cache=True)
def cap_ranges(order: int, lon0: float, lat0: float, radius: float) -> np.ndarray:
    """Canonical depth-29 ranges of the cells at ``order`` whose centre is in a cap.

    Parameters
    ----------
    order : int
        HEALPix order of the selected cells, 0..29.
    lon0, lat0 : float
        Centre of the cap, radians.
    radius : float
        Angular radius of the cap, radians.  ``radius < 0`` selects
        nothing; ``radius >= pi`` selects the whole sphere.

    Returns
    -------
    (n, 2) ndarray of int64
        Sorted, disjoint, non-adjacent ranges ``[start, end)`` of depth-29
        pixels: the cells whose centre ``p`` has ``p . c >= cos(radius)``.
    """
    if radius < 0.0 or order < 0 or order > MAX_ORDER:
        return np.empty((0, 2), dtype=np.int64)
    if radius >= math.pi:
        full = np.empty((1, 2), dtype=np.int64)
        full[0, 0] = 0
        full[0, 1] = NPIX29
        return full
    cx = math.cos(lat0) * math.cos(lon0)
    cy = math.cos(lat0) * math.sin(lon0)
    cz = math.sin(lat0)
    cosr = math.cos(radius)
    bound = np.empty(order + 1, dtype=np.float64)
    for o in range(order + 1):
        bound[o] = _RADIUS_SAFETY * max_pixrad(o) + _ANGLE_SLACK
    # Depth-first walk in NESTED order: children are pushed last-first, so
    # cells leave the stack in increasing index and the output is sorted.
    cap = 12 + 3 * (order + 1)
    st_o = np.empty(cap, dtype=np.int64)
    st_p = np.empty(cap, dtype=np.int64)
    top = 0
    for f in range(11, -1, -1):
        st_o[top] = 0
        st_p[top] = f
        top += 1
    out = np.empty((64, 2), dtype=np.int64)
    k = 0
    while top > 0:
        top -= 1
        o = st_o[top]
        p = st_p[top]
        x, y, z = _centre_vec(o, p)
        d = x * cx + y * cy + z * cz
        shift = 2 * (MAX_ORDER - o)
        if o == order:
            if d >= cosr:
                out, k = _emit(out, k, p << shift, (p + 1) << shift)
            continue
        ang = math.acos(min(1.0, max(-1.0, d)))
        if ang + bound[o] <= radius:
            out, k = _emit(out, k, p << shift, (p + 1) << shift)
        elif ang - bound[o] > radius:
            continue
        else:
            for c in range(3, -1, -1):
                st_o[top] = o + 1
                st_p[top] = 4 * p + c
                top += 1
    return out[:k].copy()


@njit(cache=True)
def cap_cells(order: int, lon0: float, lat0: float, radius: float) -> np.ndarray:
    """Sorted NESTED indices at ``order`` of the cells whose centre is in a cap.

    The cell-list form of :func:`cap_ranges` (same arguments); for tests and
    small orders: the output has one entry per cell.
    """
    r = cap_ranges(order, lon0, lat0, radius)
    shift = 2 * (MAX_ORDER - order)
    n = 0
    for i in range(r.shape[0]):
        n += (r[i, 1] - r[i, 0]) >> shift
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(r.shape[0]):
        for p in range(r[i, 0] >> shift, r[i, 1] >> shift):
            out[k] = p
            k += 1
    return out

