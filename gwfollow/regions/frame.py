"""Where a region is on the sky: a centre and a radius that hold all of it (for viewers)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gwfollow.kernels import ranges as kr
from gwfollow.kernels.geometry import max_pixrad, nest_to_lonlat


def ranges_frame(ranges: npt.NDArray[np.int64], order: int = 8) -> tuple[float, float, float]:
    """Centre (RA, Dec, deg) and radius (deg) of a circle holding the depth-29 ``ranges``.

    The region is seen at HEALPix ``order`` (its cells widened to whole
    pixels); the centre is the normalised mean of the pixel directions and
    the radius the largest separation to a pixel centre plus a pixel's
    radius.  An empty region gives ``(0, 0, 180)``; so does one spread
    evenly over the sky.
    """
    if ranges.shape[0] == 0:
        return 0.0, 0.0, 180.0
    deg = kr.degrade(ranges, order) >> (2 * (29 - order))
    lengths = deg[:, 1] - deg[:, 0]
    pix = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(deg[:, 0] - (np.cumsum(lengths) - lengths),
                                                                    lengths)
    lon, lat = nest_to_lonlat(order, pix)
    v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    c = v.sum(axis=0)
    norm = float(np.linalg.norm(c))
    if norm < 1e-9 * pix.size:
        return 0.0, 0.0, 180.0
    c /= norm
    sep = float(np.degrees(np.arccos(np.clip(v @ c, -1.0, 1.0))).max())
    ra = math.degrees(math.atan2(c[1], c[0])) % 360.0
    dec = math.degrees(math.asin(float(np.clip(c[2], -1.0, 1.0))))
    return ra, dec, min(180.0, sep + math.degrees(max_pixrad(order)))
