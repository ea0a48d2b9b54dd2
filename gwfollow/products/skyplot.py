"""The sky plot of an event: all-sky Mollweide and a zoom framing the whole 90 % region.

Drawn with ligo.skymap's astronomical projections: the probability density
per square degree (rasterised from the multi-order cells) with a colour bar,
credible contours labelled with their level, coverage MOCs filled lightly,
selected fields as their true outlines (great-circle sides, split where they
cross RA = 0 h on the all-sky panel) and the top galaxies as stars.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy_healpix import HEALPix

from gwfollow.targets.fields import footprint_outline

#: The zoom panel is left out when the 90 % region needs a radius larger than this (deg).
MAX_ZOOM_RADIUS_DEG = 50.0


def split_at_seam(ra: npt.ArrayLike, dec: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A path with continuous RA (degrees, may leave [0, 360)) cut where it crosses RA = 0.

    Returns RA in [0, 360) with NaN separating the pieces; each piece is
    extended to the seam (interpolated declination) so that nothing of the
    outline is lost at the edge of an all-sky map centred on RA = 12 h.
    """
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    out_ra: list[float] = []
    out_dec: list[float] = []
    eps = 1e-7
    for i in range(ra.size):
        if i:
            a, b = ra[i - 1], ra[i]
            ka, kb = math.floor(a / 360.0), math.floor(b / 360.0)
            if ka != kb:
                seam = 360.0 * max(ka, kb)
                t = (seam - a) / (b - a)
                d = dec[i - 1] + t * (dec[i] - dec[i - 1])
                before, after = (seam - eps, seam + eps) if b > a else (seam + eps, seam - eps)
                out_ra += [before, math.nan, after]
                out_dec += [d, math.nan, d]
        out_ra.append(ra[i])
        out_dec.append(dec[i])
    r = np.asarray(out_ra)
    return np.where(np.isnan(r), np.nan, r % 360.0), np.asarray(out_dec)


def region_frame(prob: npt.NDArray[np.float64], level: float = 0.9) -> tuple[float, float, float]:
    """Centre (RA, Dec) and radius (deg) of a circle holding the whole ``level`` credible region.

    ``prob`` is a flat NESTED HEALPix probability map.  The centre is the
    normalised mean of the region's pixel directions; the radius is the
    largest separation from it to a pixel of the region plus one pixel.
    """
    # ligo.skymap is heavy and needed only for plots.
    from ligo.skymap.postprocess import find_greedy_credible_levels

    cls = find_greedy_credible_levels(prob)
    ipix = np.flatnonzero(cls <= level)
    if ipix.size == 0:
        ipix = np.array([int(np.argmax(prob))])
    hp = HEALPix(nside=int(round(math.sqrt(prob.size / 12))), order="nested")
    lon, lat = hp.healpix_to_lonlat(ipix)
    lon, lat = np.asarray(lon.rad), np.asarray(lat.rad)
    v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    c = v.sum(axis=0)
    norm = float(np.linalg.norm(c))
    if norm < 1e-9 * ipix.size:  # a region spread evenly over the sky has no centre
        return 0.0, 0.0, 180.0
    c /= norm
    sep = np.degrees(np.arccos(np.clip(v @ c, -1.0, 1.0)))
    radius = float(sep.max()) + float(hp.pixel_resolution.to_value("deg"))
    ra = math.degrees(math.atan2(c[1], c[0])) % 360.0
    dec = math.degrees(math.asin(float(np.clip(c[2], -1.0, 1.0))))
    return ra, dec, radius


def sky_plot(skymap: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write :func:`sky_plot_png` of ``skymap`` to ``path`` (its directory is made); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(sky_plot_png(skymap, **kwargs))
    return p


def sky_plot_png(skymap: Any, *, levels: tuple[float, ...] = (0.5, 0.9),
                 targets: Any = None, fields: Any = None, coverages: dict[str, Any] | None = None,
                 title: str | None = None, zoom: bool = True, fov: Any = None) -> bytes:
    """A PNG of the sky map, rendered in memory.

    Drawn on a :class:`matplotlib.figure.Figure` of its own (not through
    ``pyplot``'s global state), so renders in several threads do not mix.

    Parameters
    ----------
    skymap : SkyMap
    levels : tuple of float
        Credible levels drawn as labelled contours.
    targets : table, optional
        Galaxies (``ra``, ``dec`` in deg), drawn as stars.
    fields : table, optional
        Field centres (``ra``, ``dec``); with ``fov`` (a
        :class:`~gwfollow.targets.fields.FieldOfView`) drawn as outlines.
    coverages : dict of name -> mocpy.MOC, optional
        Filled lightly.
    title : str, optional
    zoom : bool
        Add a panel framing the whole 90 % region (when its radius is at most
        :data:`MAX_ZOOM_RADIUS_DEG`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    warnings.filterwarnings("ignore", message=".*reproject.healpix.utils.*")
    # matplotlib and ligo.skymap are heavy and only needed for plots.
    import ligo.skymap.plot  # noqa: F401  (registers the projections)
    from ligo.skymap.bayestar import rasterize
    from ligo.skymap.postprocess import find_greedy_credible_levels
    from matplotlib.figure import Figure

    order = min(max(int(skymap.max_order), 6), 9)
    t = Table({"UNIQ": skymap.uniq, "PROBDENSITY": skymap.probdensity})
    prob = np.asarray(rasterize(t, order=order)["PROB"], dtype=float)  # per pixel, NESTED
    per_deg2 = prob / (41252.96124941928 / prob.size)
    cls = find_greedy_credible_levels(prob)
    ra_c, dec_c, radius = region_frame(prob, 0.9)
    do_zoom = zoom and radius <= MAX_ZOOM_RADIUS_DEG
    fig = Figure(figsize=(15 if do_zoom else 10, 6.6), dpi=100)
    sky = fig.add_axes([0.03, 0.22, 0.56 if do_zoom else 0.94, 0.72], projection="astro hours mollweide")
    axes = [sky]
    if do_zoom:
        zax = fig.add_axes([0.66, 0.2, 0.29, 0.72], projection="astro degrees zoom",
                           center=SkyCoord(ra_c, dec_c, unit="deg"), radius=f"{max(radius * 1.08, 1.0)} deg")
        # Dec on the right of the zoom: its label cannot meet the all-sky map's labels.
        zax.coords[0].set_axislabel("RA")
        zax.coords[1].set_axislabel("Dec")
        zax.coords[1].set_ticklabel_position("r")
        zax.coords[1].set_axislabel_position("r")
        axes.append(zax)
    image = None
    for ax in axes:
        ax.grid(alpha=0.4)
        im = ax.imshow_hpx((per_deg2, "ICRS"), nested=True, cmap="cylon")
        image = image or im
        cs = ax.contour_hpx((cls * 100, "ICRS"), nested=True, levels=[lv * 100 for lv in levels], colors="k",
                            linewidths=0.8)
        if ax is axes[-1]:  # labelled where the region is large enough to read them
            ax.clabel(cs, fmt=lambda v: f"{v:g}%", fontsize=8, inline=True)
        world = ax.get_transform("world")
        for name, moc in (coverages or {}).items():
            try:
                moc.fill(ax=ax, wcs=ax.wcs, alpha=0.15, fill=True, color="tab:blue", label=name)
            except Exception:  # noqa: BLE001 -- a coverage that cannot be drawn must not lose the report
                pass
        if fields is not None and len(fields):
            fra = np.asarray(fields["ra"], float)
            fdec = np.asarray(fields["dec"], float)
            if fov is not None:
                ora, odec = footprint_outline(fra, fdec, fov, samples_per_side=16)
                for k in range(ora.shape[0]):
                    lon = np.append(ora[k], ora[k, 0])
                    lat = np.append(odec[k], odec[k, 0])
                    if ax is sky:
                        lon, lat = split_at_seam(lon, lat)
                    ax.plot(lon, lat, "-", color="tab:green", lw=1.0, transform=world,
                            label="fields" if k == 0 else None)
            else:
                ax.plot(fra, fdec, "s", mfc="none", mec="tab:green", ms=6, transform=world, label="fields")
        if targets is not None and len(targets):
            ax.plot(np.asarray(targets["ra"], float), np.asarray(targets["dec"], float), "*", color="gold",
                    mec="k", ms=8, transform=world, label="galaxies")
    cax = fig.add_axes([0.13, 0.13, 0.36, 0.025])
    fig.colorbar(image, cax=cax, orientation="horizontal", label="probability per deg²")
    if title:
        sky.set_title(title)
    if (targets is not None and len(targets)) or (fields is not None and len(fields)) or coverages:
        axes[-1].legend(loc="lower left", fontsize=8, framealpha=0.85)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
