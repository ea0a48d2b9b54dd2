"""Credible-region selection on multi-order HEALPix maps.

The region at level ``L`` is made of the cells of highest probability
density whose cumulative probability reaches ``L`` (the "greedy" credible
region; Singer & Price 2016, PRD 93, 024013, section II.D).  Cells are
ranked by decreasing density; cells of equal density keep the order of the
input rows (a stable sort), which is the rule of the CDS MOC library that
mocpy uses.  The cumulative probability is summed sequentially in that
order, so the crossing cell is found with the same rounding as mocpy.

Three treatments of the cell that crosses ``L`` (see :mod:`gwfollow.regions.moc`):

* ``exclude``: whole cells whose cumulative probability is ``<= L``;
* ``include``: the same plus the crossing cell (encloses ``>= L``);
* ``split``: the crossing cell is divided into its four children down to
  ``max_order``; children are taken in NESTED order while their probability
  still fits in what is left of ``L``, and a cell at ``max_order`` is kept
  only when it fills what is left exactly.  This reproduces mocpy 0.21's
  ``MOC.from_multiordermap_fits_file(path, cumul_to=L)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gwfollow.kernels.healpix import uniq_to_order_ipix
from gwfollow.kernels.ranges import _merge_sorted
from gwfollow.kernels.sort import radix_argsort_u64

_HIST_BITS = 12

PI_OVER_3 = np.pi / 3.0
"""Area of a base (order-0) HEALPix cell in steradians: 4 pi / 12."""


@njit(cache=True)
def cell_probabilities(order: np.ndarray, probdensity: np.ndarray) -> np.ndarray:
    """Probability of each cell: density (per sr) times cell area (sr).

    The product is formed as ``(density * pi/3) * 4**-order``; the second
    factor is a power of two, so this is exactly the value mocpy forms.
    """
    n = order.shape[0]
    scale = np.empty(30, dtype=np.float64)
    for o in range(30):
        scale[o] = np.ldexp(1.0, -2 * o)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = (probdensity[i] * PI_OVER_3) * scale[order[i]]
    return out


@njit(cache=True)
def rank_by_density(probdensity: np.ndarray) -> np.ndarray:
    """Indices of cells by decreasing density, ties in input order (stable)."""
    return np.argsort(-probdensity, kind="mergesort")


_NEG_ZERO = np.uint64(1) << np.uint64(63)


@njit(cache=True, inline="always")
def _desc_key(b: np.uint64) -> np.uint64:
    """Sort key of a non-negative double with bits ``b``, ascending for
    decreasing values (the complement of the bits); -0.0 counts as 0.0."""
    if b == _NEG_ZERO:
        return ~np.uint64(0)
    return ~b


@njit(cache=True)
def rank_top(probdensity: np.ndarray, prob: np.ndarray, max_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Rank only the cells needed to reach ``max_level``, and their cumulative sum.

    A histogram of the density's top 16 bits (sign, exponent and 4 mantissa
    bits: buckets 4% wide), weighted by probability, finds the densest
    buckets that hold ``max_level`` with a margin; only their cells are
    radix-sorted.  The crossing cell of every level ``<= max_level`` is
    among them, so the result equals the leading part of a full ranking
    (stable: ties in row order).

    Returns
    -------
    idx : ndarray of int64
        Row indices by decreasing density (a prefix of the full ranking;
        all rows when ``max_level`` is not reached with margin).
    cumsum : ndarray of float64
        Sequential cumulative probability along ``idx``.
    """
    n = probdensity.shape[0]
    # Keys are formed on the fly (no array of n keys: fewer fresh pages per map).
    bits = probdensity.view(np.uint64)
    nb = 1 << _HIST_BITS
    hist = np.zeros(nb, dtype=np.float64)
    sh = np.uint64(64 - _HIST_BITS)
    for i in range(n):
        hist[np.int64(_desc_key(bits[i]) >> sh)] += prob[i]
    # Margin: the bucket sums are added in another order than the ranking.
    target = max_level + 1e-9
    acc = 0.0
    last = nb - 1
    for b in range(nb):
        acc += hist[b]
        if acc >= target:
            last = b
            break
    if last == nb - 1:
        keys = np.empty(n, dtype=np.uint64)
        for i in range(n):
            keys[i] = _desc_key(bits[i])
        idx = radix_argsort_u64(keys)
    else:
        lim = np.uint64(last)
        m = 0
        for i in range(n):
            if (_desc_key(bits[i]) >> sh) <= lim:
                m += 1
        cand = np.empty(m, dtype=np.int64)
        ck = np.empty(m, dtype=np.uint64)
        m = 0
        for i in range(n):
            key = _desc_key(bits[i])
            if (key >> sh) <= lim:
                cand[m] = i
                ck[m] = key
                m += 1
        order = radix_argsort_u64(ck)
        idx = np.empty(m, dtype=np.int64)
        for j in range(m):
            idx[j] = cand[order[j]]
    cumsum = np.empty(idx.shape[0], dtype=np.float64)
    s = 0.0
    for j in range(idx.shape[0]):
        s = s + prob[idx[j]]
        cumsum[j] = s
    return idx, cumsum


@njit(cache=True)
def rank_positions(idx: np.ndarray, n: int) -> np.ndarray:
    """Rank of each row (``n`` for rows outside the partial ranking ``idx``)."""
    pos = np.full(n, n, dtype=np.int64)
    for r in range(idx.shape[0]):
        pos[idx[r]] = r
    return pos


@njit(cache=True)
def sequential_cumsum(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values[idx]``, added strictly left to right."""
    n = idx.shape[0]
    out = np.empty(n, dtype=np.float64)
    acc = 0.0
    for i in range(n):
        acc = acc + values[idx[i]]
        out[i] = acc
    return out


@njit(cache=True)
def n_whole_cells(cumsum: np.ndarray, level: float) -> int:
    """Number of leading ranked cells whose cumulative probability is ``<= level``."""
    return np.searchsorted(cumsum, level, side="right")


@njit(cache=True)
def split_crossing_cell(
    order: int, ipix: int, cell_value: float, target: float, max_order: int
) -> np.ndarray:
    """Depth-29 ranges of the part of a crossing cell taken by the ``split`` rule.

    Parameters
    ----------
    order, ipix : int
        The crossing cell.
    cell_value : float
        Its probability.
    target : float
        Probability still to be enclosed (``level - cumulative before it``).
    max_order : int
        Deepest order of the split.

    Returns
    -------
    (k, 2) int64
        Canonical ranges of the children taken.
    """
    out = np.empty((3 * (max_order - order) + 1, 2), dtype=np.int64)
    k = 0
    d = np.int64(order)
    p = np.int64(ipix)
    val = cell_value
    complete = True
    while d < max_order:
        sub = val / 4.0
        d += 1
        p = p << 2
        i = 0
        while i < 4 and sub <= target:
            s = 2 * (29 - d)
            out[k, 0] = (p + i) << s
            out[k, 1] = (p + i + 1) << s
            k += 1
            target = target - sub
            i += 1
        if i == 4:
            # Rounding let all four children fit; nothing is left to split.
            complete = False
            break
        p = p + i
        val = sub
    if complete and val == target:
        s = 2 * (29 - d)
        out[k, 0] = p << s
        out[k, 1] = (p + 1) << s
        k += 1
    res = out[:k].copy()
    # Children were emitted in NESTED order within each level; sort overall.
    idx = np.argsort(res[:, 0])
    srt = np.empty_like(res)
    for j in range(k):
        srt[j, 0] = res[idx[j], 0]
        srt[j, 1] = res[idx[j], 1]
    return _merge_sorted(srt)


@njit(cache=True)
def spatial_order(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth-29 ranges of cells and the permutation that sorts them by start."""
    order, ipix = uniq_to_order_ipix(uniq)
    n = uniq.shape[0]
    rng = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        s = 2 * (29 - order[i])
        rng[i, 0] = ipix[i] << s
        rng[i, 1] = (ipix[i] + 1) << s
    return rng, np.argsort(rng[:, 0])


@njit(cache=True)
def ranges_of_top_cells(
    rng: np.ndarray, by_start: np.ndarray, position: np.ndarray, count: int
) -> np.ndarray:
    """Canonical ranges of the cells whose rank ``position`` is below ``count``.

    A single sweep in spatial order, so several levels reuse one sort.
    """
    n = by_start.shape[0]
    out = np.empty((min(n, count), 2), dtype=np.int64)
    k = 0
    for j in range(n):
        i = by_start[j]
        if position[i] < count:
            if k > 0 and rng[i, 0] <= out[k - 1, 1]:
                if rng[i, 1] > out[k - 1, 1]:
                    out[k - 1, 1] = rng[i, 1]
            else:
                out[k, 0] = rng[i, 0]
                out[k, 1] = rng[i, 1]
                k += 1
    return out[:k].copy()


@njit(cache=True)
def inverse_permutation(idx: np.ndarray) -> np.ndarray:
    """``pos`` such that ``pos[idx[r]] = r``."""
    pos = np.empty(idx.shape[0], dtype=np.int64)
    for r in range(idx.shape[0]):
        pos[idx[r]] = r
    return pos
