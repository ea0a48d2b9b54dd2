"""MOC set algebra on sorted, disjoint depth-29 ranges.

A MOC (IVOA MOC 2.0, section 4.2) is represented here as an ``(n, 2)``
int64 array of half-open ranges ``[start, end)`` of depth-29 NESTED pixels,
sorted by ``start``, disjoint and non-adjacent (adjacent ranges are merged).
That is the canonical form: two equal MOCs have identical arrays.

All functions take and return numpy arrays and run in linear time in the
number of ranges (a sweep over both inputs), except :func:`normalize`,
which sorts, and :func:`intersection` of a small and a large set, which
gallops through the large one (O(m log(n/m))).
"""

from __future__ import annotations

import numpy as np
from numba import njit

NPIX29 = 12 * (1 << 58)
"""Number of depth-29 HEALPix pixels on the sphere."""


@njit(cache=True)
def _merge_sorted(r: np.ndarray) -> np.ndarray:
    # r is sorted by start; fuse overlapping or adjacent ranges, drop empty ones.
    n = r.shape[0]
    out = np.empty((n, 2), dtype=np.int64)
    k = 0
    for i in range(n):
        s = r[i, 0]
        e = r[i, 1]
        if e <= s:
            continue
        if k > 0 and s <= out[k - 1, 1]:
            if e > out[k - 1, 1]:
                out[k - 1, 1] = e
        else:
            out[k, 0] = s
            out[k, 1] = e
            k += 1
    return out[:k].copy()


@njit(cache=True)
def normalize(r: np.ndarray) -> np.ndarray:
    """Sort ranges and merge overlapping or adjacent ones (canonical form)."""
    if r.shape[0] == 0:
        return np.empty((0, 2), dtype=np.int64)
    idx = np.argsort(r[:, 0])
    s = np.empty((r.shape[0], 2), dtype=np.int64)
    for i in range(idx.shape[0]):
        s[i, 0] = r[idx[i], 0]
        s[i, 1] = r[idx[i], 1]
    return _merge_sorted(s)


@njit(cache=True)
def is_canonical(r: np.ndarray) -> bool:
    """True when ranges are non-empty, sorted, disjoint and non-adjacent."""
    for i in range(r.shape[0]):
        if r[i, 1] <= r[i, 0]:
            return False
        if i > 0 and r[i, 0] <= r[i - 1, 1]:
            return False
    return True


@njit(cache=True)
def _trim(out: np.ndarray, k: int) -> np.ndarray:
    # Return the first k rows; copy only when that frees most of the buffer.
    if 2 * k < out.shape[0]:
        return out[:k].copy()
    return out[:k]


@njit(cache=True)
def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two canonical range sets (one merging pass)."""
    return _union_flat(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1))


@njit(cache=True)
def _union_flat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Flat (start, end, start, end, ...) views; the open output range
    # [cs, ce) stays in registers, and the loop over both inputs is apart
    # from the loop over the rest of one (together about 1.5x faster than a
    # single loop indexing the 2-D arrays).  Each input range either extends
    # the open range or closes it.
    na = a.shape[0] // 2
    nb = b.shape[0] // 2
    out = np.empty(2 * (na + nb), dtype=np.int64)
    i = 0
    j = 0
    k = 0
    cs = np.int64(0)
    ce = np.int64(-1)
    while i < na and j < nb:
        if a[2 * i] <= b[2 * j]:
            s = a[2 * i]
            e = a[2 * i + 1]
            i += 1
        else:
            s = b[2 * j]
            e = b[2 * j + 1]
            j += 1
        if s <= ce:
            if e > ce:
                ce = e
        else:
            if ce >= 0:
                out[2 * k] = cs
                out[2 * k + 1] = ce
                k += 1
            cs = s
            ce = e
    rest, p, n = (a, i, na) if i < na else (b, j, nb)
    for q in range(p, n):
        s = rest[2 * q]
        e = rest[2 * q + 1]
        if s <= ce:
            if e > ce:
                ce = e
        else:
            if ce >= 0:
                out[2 * k] = cs
                out[2 * k + 1] = ce
                k += 1
            cs = s
            ce = e
    if ce >= 0:
        out[2 * k] = cs
        out[2 * k + 1] = ce
        k += 1
    return _trim(out.reshape(-1, 2), k)


GALLOP_RATIO = 32
"""Size ratio from which :func:`intersection` gallops through the larger input."""


@njit(cache=True)
def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two canonical range sets.

    A linear sweep over both inputs when their sizes are comparable; when one
    has at least :data:`GALLOP_RATIO` times more ranges than the other, a
    galloping search (:func:`intersection_gallop`) visits only the part of
    the larger one that the smaller one touches.  Both give the same array.
    """
    fa = np.ascontiguousarray(a).reshape(-1)
    fb = np.ascontiguousarray(b).reshape(-1)
    na = fa.shape[0] // 2
    nb = fb.shape[0] // 2
    if na * GALLOP_RATIO <= nb:
        return _intersection_gallop(fa, fb)
    if nb * GALLOP_RATIO <= na:
        return _intersection_gallop(fb, fa)
    return _intersection_flat(fa, fb)


@njit(cache=True)
def intersection_gallop(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    """Intersection of a small and a large canonical range set in O(m log(n/m)).

    For each of the ``m`` ranges of ``small``, the first range of ``big``
    that ends after its start is found by galloping (exponential then
    binary) search from where the previous one stopped (Bentley & Yao 1976,
    "An almost optimal algorithm for unbounded searching"; the use for
    sorted-set intersection is Demaine, Lopez-Ortiz & Munro 2000); the
    ranges of ``big`` it overlaps are then clipped to it.  Exact: the same
    result as the linear sweep, for any sizes.
    """
    return _intersection_gallop(np.ascontiguousarray(small).reshape(-1), np.ascontiguousarray(big).reshape(-1))


@njit(cache=True)
def _gallop_end_after(big: np.ndarray, nb: int, lo: int, s: np.int64) -> int:
    # First j >= lo with big end (flat[2j+1]) > s, or nb.  Ends are increasing.
    if lo >= nb or big[2 * lo + 1] > s:
        return lo
    step = 1
    prev = lo  # invariant: end[prev] <= s
    hi = lo + 1
    while hi < nb and big[2 * hi + 1] <= s:
        prev = hi
        step <<= 1
        hi = prev + step
    if hi > nb:
        hi = nb
    # end[prev] <= s; end[hi] > s or hi == nb: binary search in (prev, hi].
    lo2 = prev + 1
    while lo2 < hi:
        mid = (lo2 + hi) >> 1
        if big[2 * mid + 1] <= s:
            lo2 = mid + 1
        else:
            hi = mid
    return lo2


@njit(cache=True)
def _intersection_gallop(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    m = small.shape[0] // 2
    nb = big.shape[0] // 2
    # Pass 0 counts the output, pass 1 fills an array of that size (the
    # linear sweep's bound, m + n rows, would be far too large here).
    total = 0
    out = np.empty(0, dtype=np.int64)
    for pas in range(2):
        if pas == 1:
            out = np.empty(2 * total, dtype=np.int64)
        k = 0
        j = 0
        for i in range(m):
            s = small[2 * i]
            e = small[2 * i + 1]
            j = _gallop_end_after(big, nb, j, s)
            q = j
            while q < nb and big[2 * q] < e:
                if pas == 1:
                    bs = big[2 * q]
                    be = big[2 * q + 1]
                    out[2 * k] = s if s > bs else bs
                    out[2 * k + 1] = e if e < be else be
                k += 1
                q += 1
            # The next small range starts after e; big ranges before q - 1
            # end before e, so the search may resume at q - 1.
            if q > j:
                j = q - 1
            if j >= nb:
                break
        total = k
    return out.reshape(-1, 2)


@njit(cache=True)
def _intersection_flat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = a.shape[0] // 2
    nb = b.shape[0] // 2
    out = np.empty(2 * (na + nb), dtype=np.int64)
    k = 0
    if na > 0 and nb > 0:
        i = 0
        j = 0
        a0, a1, b0, b1 = a[0], a[1], b[0], b[1]
        while True:
            s = a0 if a0 > b0 else b0
            e = a1 if a1 < b1 else b1
            out[2 * k] = s  # written always, kept only when non-empty (no branch)
            out[2 * k + 1] = e
            k += s < e
            if a1 < b1:
                i += 1
                if i >= na:
                    break
                a0, a1 = a[2 * i], a[2 * i + 1]
            else:
                j += 1
                if j >= nb:
                    break
                b0, b1 = b[2 * j], b[2 * j + 1]
    return _trim(out.reshape(-1, 2), k)


@njit(cache=True)
def complement(a: np.ndarray, total: np.int64 = NPIX29) -> np.ndarray:
    """Complement of a canonical range set within ``[0, total)``."""
    n = a.shape[0]
    out = np.empty((n + 1, 2), dtype=np.int64)
    k = 0
    prev = np.int64(0)
    for i in range(n):
        if a[i, 0] > prev:
            out[k, 0] = prev
            out[k, 1] = a[i, 0]
            k += 1
        prev = a[i, 1]
    if prev < total:
        out[k, 0] = prev
        out[k, 1] = total
        k += 1
    return out[:k].copy()


@njit(cache=True)
def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Set difference ``a - b`` of two canonical range sets."""
    na = a.shape[0]
    nb = b.shape[0]
    out = np.empty((na + nb, 2), dtype=np.int64)
    k = 0
    j = 0
    for i in range(na):
        s = a[i, 0]
        e = a[i, 1]
        while j < nb and b[j, 1] <= s:
            j += 1
        jj = j
        while jj < nb and b[jj, 0] < e:
            if b[jj, 0] > s:
                out[k, 0] = s
                out[k, 1] = b[jj, 0]
                k += 1
            if b[jj, 1] > s:
                s = b[jj, 1]
            if s >= e:
                break
            jj += 1
        if s < e:
            out[k, 0] = s
            out[k, 1] = e
            k += 1
    return _trim(out, k)


@njit(cache=True)
def count_pixels(a: np.ndarray) -> np.int64:
    """Number of depth-29 pixels covered (``sum(end - start)``)."""
    total = np.int64(0)
    for i in range(a.shape[0]):
        total += a[i, 1] - a[i, 0]
    return total


@njit(cache=True)
def contains(a: np.ndarray, pix29: np.ndarray) -> np.ndarray:
    """Membership of depth-29 pixels in a canonical range set.

    Binary search over range starts: O(m log n) for m pixels and n ranges.
    """
    m = pix29.shape[0]
    out = np.zeros(m, dtype=np.bool_)
    n = a.shape[0]
    if n == 0:
        return out
    starts = a[:, 0].copy()
    for i in range(m):
        p = pix29[i]
        k = np.searchsorted(starts, p, side="right") - 1
        if k >= 0 and p < a[k, 1]:
            out[i] = True
    return out


@njit(cache=True)
def overlap_lengths(cells: np.ndarray, moc: np.ndarray) -> np.ndarray:
    """Depth-29 pixel count of each cell range that lies inside ``moc``.

    Parameters
    ----------
    cells : (n, 2) int64
        Depth-29 ranges of cells, in any order, possibly not canonical.
    moc : (m, 2) int64
        Canonical range set.

    Returns
    -------
    ndarray of int64
        For each cell, the number of its depth-29 pixels in ``moc``; a cell
        partly inside gets its exact share.
    """
    n = cells.shape[0]
    out = np.zeros(n, dtype=np.int64)
    m = moc.shape[0]
    if m == 0:
        return out
    starts = moc[:, 0].copy()
    ends = moc[:, 1].copy()
    for i in range(n):
        s = cells[i, 0]
        e = cells[i, 1]
        # First MOC range that may overlap [s, e): the last with start <= s,
        # if it reaches past s, else the next one.
        k = np.searchsorted(ends, s, side="right")
        acc = np.int64(0)
        while k < m and starts[k] < e:
            lo = max(s, starts[k])
            hi = min(e, ends[k])
            if hi > lo:
                acc += hi - lo
            k += 1
        out[i] = acc
    return out


@njit(cache=True)
def degrade(a: np.ndarray, order: int) -> np.ndarray:
    """Smallest range set at ``order`` that contains ``a`` (cells partly in are kept)."""
    s = 2 * (29 - order)
    n = a.shape[0]
    out = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        out[i, 0] = (a[i, 0] >> s) << s
        out[i, 1] = ((a[i, 1] + (np.int64(1) << s) - 1) >> s) << s
    return _merge_sorted(out)


@njit(cache=True)
def to_uniq(a: np.ndarray) -> np.ndarray:
    """Decompose canonical ranges into the fewest NUNIQ cells, sorted by uniq.

    Each range is split greedily into the largest aligned HEALPix cells it
    contains (IVOA MOC 2.0, section 4.3.1).
    """
    # First count, then fill.
    total = 0
    for pas in range(2):
        k = 0
        out = np.empty(total, dtype=np.int64)
        for i in range(a.shape[0]):
            s = a[i, 0]
            e = a[i, 1]
            while s < e:
                # Largest level (depth-29 block of 4**lvl pixels) aligned at s
                # that fits in [s, e).
                lvl = 0
                while lvl < 29:
                    size = np.int64(1) << (2 * (lvl + 1))
                    if (s & (size - 1)) != 0 or s + size > e:
                        break
                    lvl += 1
                if pas == 1:
                    order = 29 - lvl
                    out[k] = (np.int64(4) << (2 * order)) + (s >> (2 * lvl))
                k += 1
                s += np.int64(1) << (2 * lvl)
        if pas == 0:
            total = k
        else:
            out.sort()
            return out
    return np.empty(0, dtype=np.int64)
