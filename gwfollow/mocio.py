"""MOC 2.0 serialisation of canonical ranges (IVOA MOC 2.0, section 4.3.3).

Writes the FITS form (a BINTABLE of sorted NUNIQ cells with the MOC 2.0
keywords) to bytes, so products can be stored and served without going
through files; mocpy reads the result.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt

from .kernels import ranges as kr


def space_moc_fits_bytes(ranges: npt.NDArray[np.int64], max_order: int, extra: dict[str, object] | None = None) -> bytes:
    """A space MOC as MOC 2.0 FITS bytes.

    Parameters
    ----------
    ranges : (n, 2) int64
        Canonical depth-29 ranges.
    max_order : int
        ``MOCORD_S``: the MOC's resolution (cells deeper are not expected).
    extra : dict, optional
        More header cards (e.g. provenance: ``OBJECT``, ``SKYMAP``).
    """
    from astropy.io import fits

    uniq = kr.to_uniq(ranges) if ranges.shape[0] else np.empty(0, dtype=np.int64)
    col = fits.Column(name="UNIQ", format="K", array=uniq)
    hdu = fits.BinTableHDU.from_columns([col])
    h = hdu.header
    h["MOCVERS"] = ("2.0", "MOC version")
    h["MOCDIM"] = ("SPACE", "Physical dimension")
    h["ORDERING"] = ("NUNIQ", "Coding method")
    h["COORDSYS"] = ("C", "Space reference frame")
    h["MOCORD_S"] = (int(max_order), "MOC resolution (best order)")
    h["MOCORDER"] = (int(max_order), "MOC resolution (MOC 1.x keyword)")
    h["MOCTOOL"] = ("gwfollow", "Name of the MOC generator")
    h["EXTNAME"] = ("MOC", "MOC name")
    h["PIXTYPE"] = "HEALPIX"
    for k, v in (extra or {}).items():
        h[k] = v
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()
