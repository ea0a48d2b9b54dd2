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
