"""Stable radix sorts for the kernels.

LSD radix sort on 64-bit keys in 11-bit digits (Knuth, TAOCP vol. 3,
section 5.2.5); digit positions where all keys agree are skipped, so the
depth-29 starts of cells (whose low bits are zero) and densities (whose
exponents are close) take two to four passes.  Stable by construction:
equal keys keep their input order, the tie rule of credible regions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_BITS = 11
_NBUCKET = 1 << _BITS
_MASK = np.uint64(_NBUCKET - 1)


@njit(cache=True)
def _radix_passes(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LSD radix sort of uint64 keys ``k`` (overwritten: one of the two key
    buffers): ``(sorted keys, order)``, stable.  Digits that are the same in
    every key (e.g. the zero low bits of coarse pixels) are skipped."""
    n = k.shape[0]
    idx = np.arange(n, dtype=np.int64)
    if n < 2:
        return k, idx
    tmp_i = np.empty(n, dtype=np.int64)
    tmp_k = np.empty(n, dtype=np.uint64)
    diff = np.uint64(0)
    k0 = k[0]
    for i in range(n):
        diff |= k[i] ^ k0
    counts = np.empty(_NBUCKET, dtype=np.int64)
    for shift in range(0, 64, _BITS):
        sh = np.uint64(shift)
        if ((diff >> sh) & _MASK) == 0:
            continue
        counts[:] = 0
        for i in range(n):
            counts[np.int64((k[i] >> sh) & _MASK)] += 1
        total = 0
        for b in range(_NBUCKET):
            c = counts[b]
            counts[b] = total
            total += c
        for i in range(n):
            d = np.int64((k[i] >> sh) & _MASK)
            j = counts[d]
            counts[d] = j + 1
            tmp_i[j] = idx[i]
            tmp_k[j] = k[i]
        idx, tmp_i = tmp_i, idx
        k, tmp_k = tmp_k, k
    return k, idx


@njit(cache=True)
def radix_argsort_u64(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (uint64) ascending, stably."""
    return _radix_passes(keys.copy())[1]


@njit(cache=True)
def sort_nonneg_i64_inplace(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted values, order)`` of non-negative int64 ``values``, stably,
    using ``values`` itself as one of the two key buffers (it is overwritten).

    Working memory is 3 arrays of the input's size (one key and two index
    buffers) instead of the 4 of :func:`radix_argsort_u64` plus a gather.
    """
    k, idx = _radix_passes(values.view(np.uint64))
    return k.view(np.int64), idx


@njit(cache=True)
def argsort_desc_stable(values: np.ndarray) -> np.ndarray:
    """Indices of non-negative float64 ``values`` by decreasing value, ties in input order.

    For non-negative IEEE-754 doubles the bit pattern orders like the value;
    its complement orders them decreasingly.  ``-0.0`` counts as ``0.0``.
    """
    n = values.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    bits = (values + 0.0).view(np.uint64)
    for i in range(n):
        keys[i] = ~bits[i]
    return radix_argsort_u64(keys)


@njit(cache=True)
def argsort_nonneg_i64(values: np.ndarray) -> np.ndarray:
    """Stable ascending argsort of non-negative int64 values."""
    return radix_argsort_u64(values.view(np.uint64))


@njit(cache=True)
def merge_sorted_runs(keys: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Stable argsort of ``keys`` made of a few ascending runs ``keys[bounds[r]:bounds[r + 1]]``.

    A k-way merge that copies each stretch of one run with one comparison
    per element and rescans the ``k`` heads only between stretches
    (O(n + s k) for ``s`` stretches): for the handful of runs of a
    multi-order map written in NUNIQ order (one per HEALPix order, each
    ascending on the sky) it beats the radix sort's passes.  Equal keys keep
    their input order, as :func:`argsort_nonneg_i64` keeps it.
    """
    k = bounds.shape[0] - 1
    n = keys.shape[0]
    heads = bounds[:k].copy()
    ends = bounds[1:].copy()
    out = np.empty(n, dtype=np.int64)
    j = 0
    while j < n:
        # The run with the smallest head and the runner-up: the best run
        # keeps winning while its head stays below the runner-up's (on a
        # tie, while its index is lower: stability), so stretches of one
        # run are copied with one comparison per element.
        best = -1
        second = -1
        for r in range(k):
            h = heads[r]
            if h >= ends[r]:
                continue
            if best < 0 or keys[h] < keys[heads[best]]:
                second = best
                best = r
            elif second < 0 or keys[h] < keys[heads[second]]:
                second = r
        h = heads[best]
        e = ends[best]
        if second < 0:
            while h < e:
                out[j] = h
                j += 1
                h += 1
        else:
            bound = keys[heads[second]]
            if best < second:
                while h < e and keys[h] <= bound:
                    out[j] = h
                    j += 1
                    h += 1
            else:
                while h < e and keys[h] < bound:
                    out[j] = h
                    j += 1
                    h += 1
        heads[best] = h
    return out
