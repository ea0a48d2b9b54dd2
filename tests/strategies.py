"""Hypothesis strategies and builders for generated sky maps and MOCs."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import strategies as st


def random_multiorder_cells(rng: np.random.Generator, max_order: int, n_splits: int) -> np.ndarray:
    """NUNIQ cells tiling the sphere, made by splitting random cells."""
    cells = [(0, p) for p in range(12)]
    for _ in range(n_splits):
        i = int(rng.integers(len(cells)))
        o, p = cells[i]
        if o >= max_order:
            continue
        cells[i : i + 1] = [(o + 1, 4 * p + c) for c in range(4)]
    o = np.array([c[0] for c in cells], dtype=np.int64)
    p = np.array([c[1] for c in cells], dtype=np.int64)
    return 4 * 4**o + p


def random_skymap_arrays(seed: int, max_order: int = 8, n_splits: int = 300, ties: bool = True):
    """(uniq, probdensity) of a random normalised multi-order map."""
    rng = np.random.default_rng(seed)
    uniq = random_multiorder_cells(rng, max_order, n_splits)
    rng.shuffle(uniq)
    order = (np.floor(np.log2(uniq // 4) / 2)).astype(np.int64)
    if ties:
        # Few distinct levels: many cells share a density, which tests the tie rule.
        dens = rng.choice(rng.exponential(1.0, size=8), size=uniq.size)
    else:
        dens = rng.exponential(1.0, size=uniq.size)
    dens[rng.random(uniq.size) < 0.1] = 0.0
    prob = dens * 4 * np.pi / (12 * 4.0**order)
    dens = dens / prob.sum()
    return uniq, dens


def multiorder_fits_bytes(uniq: np.ndarray, dens: np.ndarray, mocorder: int | None = None,
                          uniq_format: str = "K", extra: dict | None = None) -> bytes:
    """A minimal LVK-style multi-order FITS file (what mocpy reads)."""
    from astropy.io import fits

    cols = [
        fits.Column(name="UNIQ", format=uniq_format, array=uniq),
        fits.Column(name="PROBDENSITY", format="D", array=dens, unit="sr-1"),
    ]
    for name, arr in (extra or {}).items():
        cols.append(fits.Column(name=name, format="D", array=arr))
    hdu = fits.BinTableHDU.from_columns(cols)
    valid = np.asarray(uniq) >= 4  # invalid UNIQ (the tests of bad input write them) have no order
    order = (np.floor(np.log2(np.asarray(uniq)[valid] // 4) / 2)).astype(np.int64)
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NUNIQ"
    hdu.header["COORDSYS"] = "C"
    hdu.header["MOCORDER"] = int(mocorder if mocorder is not None else (order.max() if order.size else 0))
    hdu.header["INDXSCHM"] = "EXPLICIT"
    hdu.header["OBJECT"] = "MS000000gen"
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


@st.composite
def canonical_ranges(draw, max_order: int = 12, max_cells: int = 40) -> np.ndarray:
    """Canonical depth-29 ranges made of random cells of orders 0..max_order."""
    n = draw(st.integers(0, max_cells))
    out = []
    for _ in range(n):
        o = draw(st.integers(0, max_order))
        p = draw(st.integers(0, 12 * 4**o - 1))
        s = 2 * (29 - o)
        out.append((p << s, (p + 1) << s))
    from gwfollow.kernels import ranges as kr

    return kr.normalize(np.array(out, dtype=np.int64).reshape(-1, 2))
