"""Lossless conversion of flat NESTED HEALPix maps to multi-order cells.

A flat map at order ``o`` has ``12 * 4**o`` pixels.  Whenever the four
NESTED children of a cell carry exactly the same value, the cell can stand
for them without any loss of information (IVOA MOC 2.0 and the LVK
multi-order sky-map format use the same NUNIQ cells).  The quadtree is
collapsed bottom-up in O(n) and cells are emitted in NESTED order.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def collapse_uniform(values: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapse a flat NESTED map into the coarsest equivalent NUNIQ cells.

    Parameters
    ----------
    values : (12 * 4**order, k) ndarray of float64
        Per-pixel quantities that are the same for every sub-pixel of a
        cell (a density, not a per-pixel probability; distance parameters).
    order : int
        HEALPix order of the flat map.

    Returns
    -------
    uniq : ndarray of int64
        NUNIQ indices of the emitted cells, in NESTED (depth-29 start) order.
    cell_values : (m, k) ndarray of float64
        The values of each emitted cell.
    """
    npix = values.shape[0]
    ncol = values.shape[1]
    # flags[k] has one flag per cell at order (order - 1 - k): True when every
    # pixel below that cell carries the same values.  The flat level is all True.
    flags = []
    vals = []
    prev_flag = np.ones(npix, dtype=np.bool_)
    prev_val = values
    for lv in range(order - 1, -1, -1):
        n = prev_val.shape[0] // 4
        f = np.zeros(n, dtype=np.bool_)
        v = np.empty((n, ncol), dtype=np.float64)
        for c in range(n):
            j = 4 * c
            for q in range(ncol):
                v[c, q] = prev_val[j, q]
            same = prev_flag[j] and prev_flag[j + 1] and prev_flag[j + 2] and prev_flag[j + 3]
            if same:
                for q in range(ncol):
                    a = prev_val[j, q]
                    if prev_val[j + 1, q] != a or prev_val[j + 2, q] != a or prev_val[j + 3, q] != a:
                        same = False
                        break
            f[c] = same
        flags.append(f)
        vals.append(v)
        prev_flag = f
        prev_val = v
    # flags[k] is for level order-1-k.  Emit top-down with an explicit stack.
    nemit = 0
    cap = 1024
    out_u = np.empty(cap, dtype=np.int64)
    out_v = np.empty((cap, ncol), dtype=np.float64)
    stack_l = np.empty(4 * (order + 1) + 16, dtype=np.int64)
    stack_p = np.empty(4 * (order + 1) + 16, dtype=np.int64)
    for base in range(12):
        sp = 0
        stack_l[sp] = 0
        stack_p[sp] = base
        sp += 1
        while sp > 0:
            sp -= 1
            lv = stack_l[sp]
            p = stack_p[sp]
            if lv == order:
                uniform = True
            else:
                uniform = flags[order - 1 - lv][p]
            if uniform:
                if nemit == cap:
                    cap *= 2
                    nu = np.empty(cap, dtype=np.int64)
                    nv = np.empty((cap, ncol), dtype=np.float64)
                    nu[:nemit] = out_u[:nemit]
                    nv[:nemit] = out_v[:nemit]
                    out_u = nu
                    out_v = nv
                out_u[nemit] = (np.int64(4) << (2 * lv)) + p
                if lv == order:
                    for q in range(ncol):
                        out_v[nemit, q] = values[p, q]
                else:
                    vk = vals[order - 1 - lv]
                    for q in range(ncol):
                        out_v[nemit, q] = vk[p, q]
                nemit += 1
            else:
                # Push children in reverse so child 0 is processed first.
                for ch in range(3, -1, -1):
                    stack_l[sp] = lv + 1
                    stack_p[sp] = 4 * p + ch
                    sp += 1
    return out_u[:nemit].copy(), out_v[:nemit].copy()


# ----------------------------------------------------------------- streaming
#
# The same collapse, fed pixel by pixel in NESTED order (a flat map read as a
# stream).  For each level l (1..order) the state holds the group of up to
# four siblings being completed: how many were seen, whether the group is
# already "broken" (known not to merge: something below it was emitted), and
# the value of its first child while all so far are uniform and equal.
# Cells are emitted in NESTED order, as collapse_uniform emits them: before a
# cell is emitted, the uniform siblings waiting in every enclosing group are
# emitted first (coarsest group first: they precede it on the sky).


@njit(cache=True)
def stream_state(order: int, ncol: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fresh state for :func:`collapse_stream` of a map at ``order`` with ``ncol`` values.

    Returns ``(count, broken, first, pos)``: per level, siblings seen, the
    group known not to merge, the first sibling's values, and the NESTED
    index at that level of the next cell (which locates the siblings).
    """
    count = np.zeros(order + 1, dtype=np.int64)
    broken = np.zeros(order + 1, dtype=np.bool_)
    first = np.empty((order + 1, ncol), dtype=np.float64)
    pos = np.zeros(order + 1, dtype=np.int64)
    return count, broken, first, pos


@njit(cache=True)
def _emit(out_u, out_v, nemit, lv, p, vals_row):
    if nemit == out_u.shape[0]:
        cap = 2 * out_u.shape[0]
        nu = np.empty(cap, dtype=np.int64)
        nv = np.empty((cap, out_v.shape[1]), dtype=np.float64)
        nu[:nemit] = out_u[:nemit]
        nv[:nemit] = out_v[:nemit]
        out_u = nu
        out_v = nv
    out_u[nemit] = (np.int64(4) << (2 * lv)) + p
    for q in range(out_v.shape[1]):
        out_v[nemit, q] = vals_row[q]
    return out_u, out_v, nemit + 1


@njit(cache=True)
def _push(lv, row, count, broken, first, pos, out_u, out_v, nemit):
    # A uniform cell at level lv with values `row`, the next one at that level.
    ncol = row.shape[0]
    uniform = True
    while True:
        p = pos[lv]
        pos[lv] = p + 1
        if lv == 0:
            if uniform:
                out_u, out_v, nemit = _emit(out_u, out_v, nemit, 0, p, row)
            break
        if uniform and not broken[lv]:
            same = True
            if count[lv] == 0:
                for q in range(ncol):
                    first[lv, q] = row[q]
            else:
                for q in range(ncol):
                    if row[q] != first[lv, q]:
                        same = False
                        break
            if not same:
                # The group cannot merge: every enclosing group breaks, its
                # waiting siblings are emitted (coarsest first), then this
                # cell.  pos[l] is the next cell at level l: for l < lv the
                # ancestor still open, for lv the one after this cell.
                for l in range(1, lv + 1):
                    if not broken[l]:
                        broken[l] = True
                        base = pos[l] - count[l] - (1 if l == lv else 0)
                        for j in range(count[l]):
                            out_u, out_v, nemit = _emit(out_u, out_v, nemit, l, base + j, first[l])
                out_u, out_v, nemit = _emit(out_u, out_v, nemit, lv, p, row)
        elif uniform:
            # A broken group: a uniform cell is final (the enclosing groups
            # broke together with this one).
            out_u, out_v, nemit = _emit(out_u, out_v, nemit, lv, p, row)
        count[lv] += 1
        if count[lv] < 4:
            break
        # The group is complete: its parent is uniform unless it broke.
        uniform = not broken[lv]
        count[lv] = 0
        broken[lv] = False
        lv -= 1
        if uniform:
            row = first[lv + 1]
    return out_u, out_v, nemit


@njit(cache=True)
def collapse_stream(
    values: np.ndarray,
    order: int,
    state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    out_u: np.ndarray,
    out_v: np.ndarray,
    nemit: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Feed the next rows of a flat NESTED map to the streaming collapse.

    Runs of equal pixels that fill an aligned NESTED cell are found by one
    scan and fed as that cell, so large uniform areas cost one comparison per
    pixel.

    Parameters
    ----------
    values : (r, k) float64
        The next ``r`` pixels (in NESTED order, continuing the previous call).
    order : int
        Order of the flat map.
    state
        From :func:`stream_state`, updated in place.
    out_u, out_v, nemit
        Output buffers and the number of cells emitted so far (buffers grow
        by doubling and are returned).

    Returns
    -------
    out_u, out_v, nemit
        When the last pixel has been fed, ``out_u[:nemit]``, ``out_v[:nemit]``
        equal :func:`collapse_uniform` of the whole map.
    """
    count, broken, first, pos = state
    n = values.shape[0]
    ncol = values.shape[1]
    r = 0
    while r < n:
        # Largest aligned block that starts here: 4**kmax pixels.
        pix = pos[order]
        kmax = 0
        while kmax < order and (pix & ((np.int64(1) << (2 * (kmax + 1))) - 1)) == 0:
            kmax += 1
        lim = min(np.int64(1) << (2 * kmax), n - r)
        m = 1
        while m < lim:
            same = True
            for q in range(ncol):
                if values[r + m, q] != values[r, q]:
                    same = False
                    break
            if not same:
                break
            m += 1
        k = 0
        while k < kmax and (np.int64(1) << (2 * (k + 1))) <= m:
            k += 1
        lv = order - k
        # The finer levels' groups inside the block are empty (aligned).
        for l in range(lv + 1, order + 1):
            pos[l] += np.int64(1) << (2 * (l - lv))
        out_u, out_v, nemit = _push(lv, values[r], count, broken, first, pos, out_u, out_v, nemit)
        r += np.int64(1) << (2 * k)
    return out_u, out_v, nemit


@njit(cache=True)
def check_and_scale(col: np.ndarray, scale: float) -> tuple[int, int, int, int]:
    """Count non-finite and negative values of ``col``, then multiply it by ``scale`` in place.

    Returns
    -------
    n_nonfinite, first_nonfinite, n_negative, first_negative : int
        Counts and first indices (-1 when none); the values are checked
        before scaling.
    """
    nbad = 0
    fbad = -1
    nneg = 0
    fneg = -1
    for i in range(col.shape[0]):
        v = col[i]
        if not np.isfinite(v):
            if fbad < 0:
                fbad = i
            nbad += 1
        elif v < 0:
            if fneg < 0:
                fneg = i
            nneg += 1
    if scale != 1.0:
        for i in range(col.shape[0]):
            col[i] = col[i] * scale
    return nbad, fbad, nneg, fneg
