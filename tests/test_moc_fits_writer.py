"""The direct MOC 2.0 FITS writer against astropy's: the same bytes, and mocpy reads them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from mocpy import MOC

from gwfollow.kernels import ranges as kr
from gwfollow.regions.mocio import credible_moc_fits_bytes, space_moc_fits_bytes


def _astropy_bytes(ranges: np.ndarray, max_order: int, extra: dict[str, object]) -> bytes:
    """The reference: the same HDUs built and written by astropy."""
    uniq = kr.to_uniq(ranges) if ranges.shape[0] else np.empty(0, dtype=np.int64)
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="UNIQ", format="K", array=uniq)])
    h = hdu.header
    for k, v in (("MOCVERS", ("2.0", "MOC version")), ("MOCDIM", ("SPACE", "Physical dimension")),
                 ("ORDERING", ("NUNIQ", "Coding method")), ("COORDSYS", ("C", "Space reference frame")),
                 ("MOCORD_S", (max_order, "MOC resolution (best order)")),
                 ("MOCORDER", (max_order, "MOC resolution (MOC 1.x keyword)")),
                 ("MOCTOOL", ("gwfollow", "Name of the MOC generator")), ("EXTNAME", ("MOC", "MOC name")),
                 ("PIXTYPE", "HEALPIX")):
        h[k] = v
    for k, v in extra.items():
        h[k] = v
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


@pytest.mark.parametrize("n", [0, 1, 7, 400, 1000])
def test_same_bytes_as_astropy(n: int) -> None:
    rng = np.random.default_rng(n)
    order = 10
    cells = np.unique(rng.integers(0, 12 * 4**order, n))
    shift = 2 * (29 - order)
    ranges = kr.normalize(np.stack([cells << shift, (cells + 1) << shift], axis=1).astype(np.int64)) if n else \
        np.empty((0, 2), dtype=np.int64)
    extra = {"OBJECT": ("S241102br", "Sky map's object (superevent) id"), "CREDLEV": (0.9, "Credible level"),
             "FLAG": (True, "a logical"), "COUNT": (1, "an integer"), "SKYMAPSH": "ab" * 32}
    got = space_moc_fits_bytes(ranges, order, extra)
    assert got == _astropy_bytes(ranges, order, extra)
    assert len(got) % 2880 == 0
    if n:
        moc = MOC.from_fits(io.BytesIO(got))
        assert np.array_equal(moc.to_depth29_ranges, ranges)


def test_credible_moc_header_reads_back() -> None:
    ranges = kr.normalize(np.array([[0, 4**20], [5 * 4**20, 9 * 4**20]], dtype=np.int64))
    data = credible_moc_fits_bytes(ranges, 9, object_id="S1", level=0.5, boundary="split", skymap_sha256="f" * 64,
                                   version="1.2.3")
    with fits.open(io.BytesIO(data)) as hdul:
        h = hdul[1].header
        assert (h["OBJECT"], h["CREDLEV"], h["CREDBND"], h["SKYMAPSH"], h["GWFVERS"]) == \
            ("S1", 0.5, "split", "f" * 64, "1.2.3")
        assert np.array_equal(hdul[1].data["UNIQ"], kr.to_uniq(ranges))
