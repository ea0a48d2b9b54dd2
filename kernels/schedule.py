"""Scheduling kernels: unit-length jobs with time windows on one telescope.

Time is cut into equal slots (one exposure and its overheads each).  A job
may run in any slot of its window ``[release, deadline]`` (inclusive slot
indices).  Earliest-deadline-first (Jackson 1955; for unit jobs with integer
release times, Horn 1974, "Some simple scheduling algorithms", Naval Research
Logistics Quarterly 21, 177) places every job exactly when any placement
exists: at each slot, the released job with the earliest deadline runs.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _sift_down(heap_d: np.ndarray, heap_j: np.ndarray, n: int, i: int) -> None:
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        small = left
        right = left + 1
        if right < n and heap_d[right] < heap_d[left]:
            small = right
        if heap_d[small] < heap_d[i] or (heap_d[small] == heap_d[i] and heap_j[small] < heap_j[i]):
            heap_d[i], heap_d[small] = heap_d[small], heap_d[i]
            heap_j[i], heap_j[small] = heap_j[small], heap_j[i]
            i = small
        else:
            return


@njit(cache=True)
def _sift_up(heap_d: np.ndarray, heap_j: np.ndarray, i: int) -> None:
    while i > 0:
        parent = (i - 1) // 2
        if heap_d[i] < heap_d[parent] or (heap_d[i] == heap_d[parent] and heap_j[i] < heap_j[parent]):
            heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
            heap_j[i], heap_j[parent] = heap_j[parent], heap_j[i]
            i = parent
        else:
            return


@njit(cache=True)
def edf_assign(release: np.ndarray, deadline: np.ndarray) -> np.ndarray:
    """Slots for unit jobs with windows, by earliest deadline first.

    Parameters
    ----------
    release, deadline : (n,) int64
        First and last slot (inclusive) each job may use; ``release <= deadline``.

    Returns
    -------
    (n,) int64
        The slot of each job, pairwise distinct and inside its window, or,
        when no such assignment exists, all ``-1``.
    """
    n = release.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    order = np.argsort(release, kind="mergesort")
    heap_d = np.empty(n, dtype=np.int64)
    heap_j = np.empty(n, dtype=np.int64)
    size = 0
    k = 0
    t = release[order[0]]
    done = 0
    while done < n:
        if size == 0 and k < n and release[order[k]] > t:
            t = release[order[k]]
        while k < n and release[order[k]] <= t:
            j = order[k]
            heap_d[size] = deadline[j]
            heap_j[size] = j
            _sift_up(heap_d, heap_j, size)
            size += 1
            k += 1
        d = heap_d[0]
        j = heap_j[0]
        if d < t:
            out[:] = -1
            return out
        out[j] = t
        done += 1
        size -= 1
        if size > 0:
            heap_d[0] = heap_d[size]
            heap_j[0] = heap_j[size]
            _sift_down(heap_d, heap_j, size, 0)
        t += 1
    return out


@njit(cache=True)
def longest_run(mask: np.ndarray) -> np.ndarray:
    """First and last index of the longest run of True in each row.

    Parameters
    ----------
    mask : (m, n) bool

    Returns
    -------
    (m, 2) int64
        ``[first, last]`` (inclusive) of the longest run (the earliest on
        ties); ``[-1, -2]`` for a row without True.
    """
    m, n = mask.shape
    out = np.empty((m, 2), dtype=np.int64)
    for i in range(m):
        best_a = -1
        best_len = 0
        a = -1
        for j in range(n + 1):
            on = j < n and mask[i, j]
            if on:
                if a < 0:
                    a = j
            elif a >= 0:
                if j - a > best_len:
                    best_len = j - a
                    best_a = a
                a = -1
        out[i, 0] = best_a
        out[i, 1] = best_a + best_len - 1 if best_a >= 0 else -2
    return out
