"""Probability of a multi-order map inside a MOC.

A cell wholly inside the MOC contributes its probability; a cell partly
inside contributes the fraction of its area that lies inside (density is
uniform within a cell), counted exactly in depth-29 pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .ranges import overlap_lengths


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
