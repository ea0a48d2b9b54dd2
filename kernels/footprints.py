"""Probability in many fixed footprints (a telescope's tile grid) at once.

A telescope's footprints are fixed; only the sky map changes from alert to
alert.  The boundaries of all footprint ranges, sorted and made unique once
per telescope, cut the sky into *atoms*: depth-29 intervals ``[u[a],
u[a + 1])`` that lie wholly inside or wholly outside each footprint, so a
footprint is a list of atom spans ``[ia, ib)``.

For a sky map, one merge of the atom boundaries with the map's cells (both
in sky order) gives ``F(u[a])``, the probability of the sky before each
boundary (a cell cut by a boundary counts pro rata of its depth-29 pixels,
as :mod:`gwfollow.kernels.probability` counts it).  Then:

* the probability of a footprint is the sum over its spans of
  ``F(u[ib]) - F(u[ia])``: O(spans), independent of the map's resolution;
* an atom's probability is ``F(u[a + 1]) - F(u[a])``, and the probability a
  footprint adds to a set of covered atoms is the sum over its uncovered
  atoms, which is what the greedy field selection needs.

The cost per map is O(boundaries + cells) for all footprints together,
instead of one search of the map per footprint range.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def atom_spans(bounds: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices ``[ia, ib)`` of each range (``bounds`` sorted, unique, containing every range bound)."""
    n = ranges.shape[0]
    ia = np.empty(n, dtype=np.int32)
    ib = np.empty(n, dtype=np.int32)
    for r in range(n):
        ia[r] = np.searchsorted(bounds, ranges[r, 0])
        ib[r] = np.searchsorted(bounds, ranges[r, 1])
    return ia, ib


@njit(cache=True)
def _two_sum(a: float, b: float) -> tuple[float, float]:
    # a + b = s + err exactly (Knuth, TAOCP vol. 2, 4.2.2, theorem B).
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


@njit(cache=True)
def cumulative_at(
    bounds: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray, cell_prob: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Probability of the sky below each boundary: ``F(bounds[a])``, as a double-double.

    Parameters
    ----------
    bounds : (k,) int64
        Sorted depth-29 positions.
    starts, ends : (n,) int64
        The map's cells' depth-29 ranges in sky order (sorted, disjoint).
    rows : (n,) int64
        Map row of each of them (index into ``cell_prob``).
    cell_prob : (n,) float64
        Probability of each cell by map row.

    Returns
    -------
    hi, lo : (k,) float64
        ``F(x) = hi + lo``: the summed probability of the cells wholly below
        ``x`` plus the share of the cell that contains ``x`` below it.  Cells
        absent from the map (a partial tiling) contribute nothing.  The sum
        is carried with its rounding error (TwoSum), so the difference of two
        values, the probability between them, keeps full relative precision
        even where ``F`` is close to 1.
    """
    k = bounds.shape[0]
    n = starts.shape[0]
    hi = np.empty(k, dtype=np.float64)
    lo = np.empty(k, dtype=np.float64)
    acc = 0.0  # probability of cells [0, c): acc + comp
    comp = 0.0
    c = 0
    for a in range(k):
        x = bounds[a]
        while c < n and ends[c] <= x:
            acc, e = _two_sum(acc, cell_prob[rows[c]])
            comp += e
            c += 1
        if c < n and starts[c] < x:
            s = starts[c]
            h, e = _two_sum(acc, cell_prob[rows[c]] * ((x - s) / (ends[c] - s)))
            hi[a] = h
            lo[a] = comp + e
        else:
            hi[a] = acc
            lo[a] = comp
    return hi, lo


@njit(cache=True)
def span_sums(
    hi: np.ndarray, lo: np.ndarray, ia: np.ndarray, ib: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Probability of each footprint: the sum over its spans of ``F[ib] - F[ia]``.

    ``F = hi + lo`` (:func:`cumulative_at`); ``offsets`` (length footprints
    + 1) delimits each footprint's spans.
    """
    m = offsets.shape[0] - 1
    out = np.empty(m, dtype=np.float64)
    for f in range(m):
        t = 0.0
        for r in range(offsets[f], offsets[f + 1]):
            t += (hi[ib[r]] - hi[ia[r]]) + (lo[ib[r]] - lo[ia[r]])
        out[f] = t if t > 0.0 else 0.0
    return out


@njit(cache=True)
def uncovered_gain(
    atom_prob: np.ndarray, covered: np.ndarray, ia: np.ndarray, ib: np.ndarray, lo: int, hi: int
) -> float:
    """Probability of the atoms of spans ``lo..hi`` not yet ``covered``."""
    t = 0.0
    for r in range(lo, hi):
        for a in range(ia[r], ib[r]):
            if not covered[a]:
                t += atom_prob[a]
    return t


@njit(cache=True)
def cover(covered: np.ndarray, ia: np.ndarray, ib: np.ndarray, lo: int, hi: int) -> None:
    """Mark the atoms of spans ``lo..hi`` covered (in place)."""
    for r in range(lo, hi):
        for a in range(ia[r], ib[r]):
            covered[a] = True


@njit(cache=True)
def atom_probabilities(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Probability of each atom, ``F[a + 1] - F[a]`` (never negative)."""
    k = hi.shape[0]
    out = np.empty(max(k - 1, 0), dtype=np.float64)
    for a in range(k - 1):
        d = (hi[a + 1] - hi[a]) + (lo[a + 1] - lo[a])
        out[a] = d if d > 0.0 else 0.0
    return out


@njit(cache=True)
def overlap_pixels(
    bounds: np.ndarray, region: np.ndarray, ia: np.ndarray, ib: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Depth-29 pixels each footprint shares with ``region`` (canonical ranges), exactly.

    One merge of the boundaries with the region gives the number of region
    pixels below each boundary (int64: the sphere has 12 * 4**29 < 2**63
    pixels); a footprint's overlap is the sum over its spans.
    """
    k = bounds.shape[0]
    n = region.shape[0]
    below = np.empty(k, dtype=np.int64)
    acc = np.int64(0)
    c = 0
    for a in range(k):
        x = bounds[a]
        while c < n and region[c, 1] <= x:
            acc += region[c, 1] - region[c, 0]
            c += 1
        if c < n and region[c, 0] < x:
            below[a] = acc + (x - region[c, 0])
        else:
            below[a] = acc
    m = offsets.shape[0] - 1
    out = np.zeros(m, dtype=np.int64)
    for f in range(m):
        t = np.int64(0)
        for r in range(offsets[f], offsets[f + 1]):
            t += below[ib[r]] - below[ia[r]]
        out[f] = t
    return out


@njit(cache=True)
def _heap_less(k1: float, i1: int, k2: float, i2: int) -> bool:
    return k1 < k2 or (k1 == k2 and i1 < i2)


@njit(cache=True)
def _sift_down(key: np.ndarray, idx: np.ndarray, n: int, p: int) -> None:
    while True:
        c = 2 * p + 1
        if c >= n:
            return
        if c + 1 < n and _heap_less(key[c + 1], idx[c + 1], key[c], idx[c]):
            c += 1
        if _heap_less(key[c], idx[c], key[p], idx[p]):
            key[p], key[c] = key[c], key[p]
            idx[p], idx[c] = idx[c], idx[p]
            p = c
        else:
            return


@njit(cache=True)
def greedy_cover(
    atom_prob: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    prob: np.ndarray,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximum coverage of probability by footprints (lazy evaluation).

    At each step the candidate that adds the most probability not yet
    covered is chosen (Nemhauser, Wolsey & Fisher 1978); coverage is
    submodular, so a candidate's last computed gain bounds its current one
    and a priority queue of those bounds (Minoux 1978, "accelerated greedy")
    re-evaluates only the top.  Ties go to the lower candidate index.

    Parameters
    ----------
    atom_prob : (k - 1,) float64
        Probability of each atom.
    ia, ib, offsets
        The footprints' atom spans (:func:`atom_spans`); footprint ``f`` owns
        spans ``offsets[f]:offsets[f + 1]``.
    rows : (m,) int64
        The candidate footprints.
    prob : (m,) float64
        Their probabilities (the initial bounds).
    limit : int
        Number of footprints to select at most.

    Returns
    -------
    chosen : ndarray of int64
        Indices into ``rows``, in selection order.
    gain : ndarray of float64
        Probability each added when chosen.
    """
    m = rows.shape[0]
    key = np.empty(m, dtype=np.float64)
    idx = np.empty(m, dtype=np.int64)
    for i in range(m):
        key[i] = -prob[i]
        idx[i] = i
    n = m
    for p in range(n // 2 - 1, -1, -1):
        _sift_down(key, idx, n, p)
    covered = np.zeros(atom_prob.shape[0], dtype=np.bool_)
    chosen = np.empty(min(limit, m), dtype=np.int64)
    gains = np.empty(min(limit, m), dtype=np.float64)
    c = 0
    while n > 0 and c < chosen.shape[0]:
        i = idx[0]
        f = rows[i]
        g = uncovered_gain(atom_prob, covered, ia, ib, offsets[f], offsets[f + 1])
        # Pop the top; compare its fresh gain with the next bound.
        n -= 1
        key[0] = key[n]
        idx[0] = idx[n]
        _sift_down(key, idx, n, 0)
        if n > 0 and g < -key[0] - 1e-15:
            # Push it back with its fresh (lower) bound.
            q = n
            key[q] = -g
            idx[q] = i
            n += 1
            while q > 0:
                par = (q - 1) // 2
                if _heap_less(key[q], idx[q], key[par], idx[par]):
                    key[q], key[par] = key[par], key[q]
                    idx[q], idx[par] = idx[par], idx[q]
                    q = par
                else:
                    break
            continue
        chosen[c] = i
        gains[c] = g
        c += 1
        cover(covered, ia, ib, offsets[f], offsets[f + 1])
    return chosen[:c].copy(), gains[:c].copy()
