"""Probability of a multi-order map inside a MOC.

A cell wholly inside the MOC contributes its probability; a cell partly
inside contributes the fraction of its area that lies inside (density is
uniform within a cell), counted exactly in depth-29 pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gwfollow.kernels.ranges import overlap_lengths


@njit(cache=True)
def probability_in_ranges(
    cell_ranges: np.ndarray, cell_prob: np.ndarray, moc: np.ndarray
) -> float:
    """Sum of ``cell_prob`` weighted by the fraction of each cell inside ``moc``.

    Parameters
    ----------
    cell_ranges : (n, 2) int64
        Depth-29 ranges of the map's cells.
    cell_prob : (n,) float64
        Probability of each cell.
    moc : (m, 2) int64
        Canonical depth-29 ranges.
    """
    inside = overlap_lengths(cell_ranges, moc)
    total = 0.0
    for i in range(cell_ranges.shape[0]):
        if inside[i] == 0:
            continue
        length = cell_ranges[i, 1] - cell_ranges[i, 0]
        if inside[i] == length:
            total += cell_prob[i]
        else:
            total += cell_prob[i] * (inside[i] / length)
    return total


@njit(cache=True)
def probability_in_ranges_sorted(
    starts: np.ndarray, ends: np.ndarray, rows: np.ndarray, cell_prob: np.ndarray, moc: np.ndarray
) -> float:
    """:func:`probability_in_ranges` for a small ``moc``: only the cells it touches are visited.

    ``starts``/``ends`` are the cells' depth-29 ranges sorted by start and
    ``rows`` their map rows.  Each MOC range finds its first cell by binary
    search; the touched cells' contributions are then added in map-row
    order, as :func:`probability_in_ranges` adds them, so both return the
    same double.
    """
    n = starts.shape[0]
    m = moc.shape[0]
    cap = 64
    hit = np.empty(cap, dtype=np.int64)  # positions in sorted order
    ins = np.empty(cap, dtype=np.int64)  # depth-29 pixels inside
    h = 0
    for r in range(m):
        s = moc[r, 0]
        e = moc[r, 1]
        k = np.searchsorted(ends, s, side="right")
        while k < n and starts[k] < e:
            ov = min(e, ends[k]) - max(s, starts[k])
            if h > 0 and hit[h - 1] == k:  # the same cell, from the next MOC range
                ins[h - 1] += ov
            else:
                if h == cap:
                    cap *= 2
                    hit2 = np.empty(cap, dtype=np.int64)
                    ins2 = np.empty(cap, dtype=np.int64)
                    hit2[:h] = hit[:h]
                    ins2[:h] = ins[:h]
                    hit, ins = hit2, ins2
                hit[h] = k
                ins[h] = ov
                h += 1
            if ends[k] > e:
                break
            k += 1
    row = np.empty(h, dtype=np.int64)
    for j in range(h):
        row[j] = rows[hit[j]]
    order = np.argsort(row)
    total = 0.0
    for j in order:
        k = hit[j]
        length = ends[k] - starts[k]
        if ins[j] == length:
            total += cell_prob[row[j]]
        else:
            total += cell_prob[row[j]] * (ins[j] / length)
    return total
