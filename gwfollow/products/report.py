"""Products as files: ranked tables (JSON, CSV, VOTable), event reports, sky plots.

Tables keep their units (VOTable ``unit`` attributes open in TOPCAT);
provenance (sky-map sha256, levels, catalogue name and version, gwfollow
version) travels in the table metadata / VOTable INFO elements / JSON.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io.votable import from_table
from astropy.io.votable.tree import Info
from astropy.table import Table
from astropy_healpix import HEALPix

from gwfollow.errors import ReportError

FORMATS = ("json", "csv", "votable")


def format_for(path: str | os.PathLike[str] | None, fmt: str | None) -> str:
    """The table format from ``--format`` or the file extension."""
    if fmt:
        if fmt not in FORMATS:
            raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    if path is None:
        return "json"
    ext = Path(path).suffix.lower()
    guess = {".json": "json", ".csv": "csv", ".xml": "votable", ".vot": "votable", ".votable": "votable"}.get(ext)
    if guess is None:
        raise ReportError(f"cannot tell the table format of {str(path)!r}", hint="use --format json|csv|votable")
    return guess


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.str_, bytes)):
        return str(v)
    return v


def table_bytes(table: Any, fmt: str) -> bytes:
    """Serialise an astropy Table as JSON, CSV or VOTable bytes."""
    if fmt == "json":
        cols = table.colnames
        rows = [{c: _jsonable(table[c][i].value if hasattr(table[c][i], "value") else table[c][i]) for c in cols}
                for i in range(len(table))]
        units = {c: str(table[c].unit) for c in cols if getattr(table[c], "unit", None) is not None}
        meta = {k: _jsonable(v) for k, v in table.meta.items()}
        return (json.dumps({"columns": cols, "units": units, "provenance": meta, "rows": rows}, indent=1) + "\n").encode()
    buf = io.BytesIO()
    if fmt == "csv":
        s = io.StringIO()
        table.write(s, format="ascii.csv", overwrite=True)
        return s.getvalue().encode()
    if fmt == "votable":

        vt = from_table(table)
        res = vt.resources[0]

        for k, v in table.meta.items():
            res.infos.append(Info(name=str(k), value=str(v)))
        vt.to_xml(buf)
        return buf.getvalue()
    raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def write_table(table: Any, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write a ranked table; the format from ``fmt`` or the extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(table_bytes(table, format_for(p, fmt)))
    return p


def sky_plot(skymap: Any, path: str | os.PathLike[str], *, levels: tuple[float, ...] = (0.5, 0.9),
             targets: Any = None, fields: Any = None, coverages: dict[str, Any] | None = None,
             title: str | None = None, zoom: bool = True, fov: Any = None) -> Path:
    """A PNG of the sky map with ligo.skymap's projections.

    Draws the probability density (rasterised from the multi-order cells),
    the credible contours at ``levels``, the top targets (``targets``: a
    ranked galaxy table) and fields (``fields``: a table with ra/dec), and
    coverage MOCs filled lightly.  ``zoom`` adds a zoomed panel on the
    90 % region when it is small.  With ``fov`` (a
    :class:`~gwfollow.targets.fields.FieldOfView`) fields are drawn as outlines.
    """
    # plotting is heavy and only reports need it.
    import matplotlib

    matplotlib.use("Agg")

    warnings.filterwarnings("ignore", message=".*reproject.healpix.utils.*")
    import ligo.skymap.plot  # noqa: F401  (registers the projections)

    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.bayestar import rasterize

    # ligo.skymap is heavy (seconds to import) and needed only here.
    from ligo.skymap.postprocess import find_greedy_credible_levels

    # plotting is heavy and only reports need it.
    from matplotlib import pyplot as plt

    order = min(max(int(skymap.max_order), 6), 9)
    t = Table({"UNIQ": skymap.uniq, "PROBDENSITY": skymap.probdensity})
    prob = np.asarray(rasterize(t, order=order)["PROB"], dtype=float)  # per pixel, NESTED
    flat = prob / (4 * np.pi / prob.size)
    cls = find_greedy_credible_levels(prob)
    area90 = float((cls <= 0.9).sum()) * 41252.96 / prob.size
    do_zoom = zoom and area90 < 2000
    fig = plt.figure(figsize=(15 if do_zoom else 10, 6), dpi=100)
    axes = [fig.add_axes([0.02, 0.1, 0.6 if do_zoom else 0.96, 0.8], projection="astro hours mollweide")]
    if do_zoom:

        hp = HEALPix(nside=int(np.sqrt(prob.size / 12)), order="nested")
        lon, lat = hp.healpix_to_lonlat(np.argmax(prob))
        radius = float(np.clip(np.sqrt(area90), 2.0, 40.0))
        axes.append(fig.add_axes([0.66, 0.1, 0.32, 0.8], projection="astro degrees zoom",
                                 center=SkyCoord(lon, lat), radius=f"{radius} deg"))
        axes[1].coords[0].set_axislabel("RA")
        axes[1].coords[1].set_axislabel("Dec")
    for ax in axes:
        ax.grid()
        ax.imshow_hpx((flat, "ICRS"), nested=True, cmap="cylon")
        ax.contour_hpx((cls * 100, "ICRS"), nested=True, levels=[lv * 100 for lv in levels], colors="k",
                       linewidths=0.8)
        world = ax.get_transform("world")
        for name, moc in (coverages or {}).items():
            try:
                moc.fill(ax=ax, wcs=ax.wcs, alpha=0.15, fill=True, color="tab:blue", label=name)
            except Exception:  # a coverage that cannot be drawn must not lose the report
                pass
        if fields is not None and len(fields):
            fra = np.asarray(fields["ra"], float)
            fdec = np.asarray(fields["dec"], float)
            if fov is not None:
                for k, (ra0, dec0) in enumerate(zip(fra, fdec)):
                    lon, lat = _outline(ra0, dec0, fov)
                    ax.plot(lon, lat, "-", color="tab:green", lw=1.0, transform=world,
                            label="fields" if k == 0 else None)
            else:
                ax.plot(fra, fdec, "s", mfc="none", mec="tab:green", ms=6, transform=world, label="fields")
        if targets is not None and len(targets):
            ax.plot(np.asarray(targets["ra"], float), np.asarray(targets["dec"], float), "*", color="gold",
                    mec="k", ms=8, transform=world, label="galaxies")
    if title:
        axes[0].set_title(title)
    if (targets is not None and len(targets)) or (fields is not None and len(fields)) or coverages:
        axes[-1].legend(loc="lower right", fontsize=8)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, bbox_inches="tight")
    plt.close(fig)
    return p


def _outline(ra0: float, dec0: float, fov: Any, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Outline of a field of view (degrees), through the gnomonic projection at its centre."""
    if fov.shape == "circle":
        t = np.linspace(0, 2 * np.pi, 4 * n + 1)
        x = np.tan(np.radians(fov.radius_deg)) * np.cos(t)
        y = np.tan(np.radians(fov.radius_deg)) * np.sin(t)
    else:
        hw = np.tan(np.radians(fov.width_deg / 2))
        hh = np.tan(np.radians(fov.height_deg / 2))
        s = np.linspace(-1, 1, n)
        x = np.concatenate([s * hw, np.full(n, hw), -s * hw, np.full(n, -hw), [-hw]])
        y = np.concatenate([np.full(n, -hh), s * hh, np.full(n, hh), -s * hh, [-hh]])
        rot = np.radians(getattr(fov, "rotation_deg", 0.0))
        x, y = x * np.cos(rot) - y * np.sin(rot), x * np.sin(rot) + y * np.cos(rot)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    # Inverse gnomonic projection (x east, y north).
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0))
        ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _cell(v: Any) -> str:
    """A table cell's text: floats to 4 significant digits, None empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gwfollow.products", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    return env


def event_report_html(summary: dict[str, Any], galaxies: dict[str, list[dict[str, Any]]] | None = None,
                      image: str | None = "sky.png") -> str:
    """A readable one-page HTML report of an event (``summary`` as in replay).

    Rendered by Jinja2 with autoescape (``templates/report.html``): every
    value an alert carried is escaped, whatever it holds.
    """
    areas = summary.get("areas_deg2") or {}
    probs = summary.get("probabilities") or {}
    return _templates().get_template("report.html").render(
        sid=summary["superevent_id"],
        retracted=bool(summary.get("retracted")),
        state="RETRACTED" if summary.get("retracted") else summary.get("state", ""),
        areas=[{"level": k, "area_deg2": v, "probability": probs.get(k)} for k, v in areas.items()],
        image=image,
        alerts=summary.get("alerts", []),
        skymap_versions=summary.get("skymap_versions", []),
        galaxies=galaxies or {},
        prov=summary.get("provenance", {}),
        latest_skymap=summary.get("latest_skymap") or "",
    )


def convert_table(json_bytes: bytes, fmt: str, limit: int | None = None, site: str | None = None) -> bytes:
    """A stored target table (JSON) in ``fmt`` (json, csv, votable): the first ``limit``
    rows, and with ``site`` only that site's observing windows."""

    doc = json.loads(json_bytes)
    rows = doc["rows"][:limit] if limit else doc["rows"]
    if site is not None:
        drop = [c for c in doc["columns"] if c.startswith("windows_") and c != f"windows_{site}"]
        doc["columns"] = [c for c in doc["columns"] if c not in drop]
        rows = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    elif fmt == "json" and limit is None:
        return json_bytes
    if fmt == "json":
        return json.dumps({**doc, "rows": rows}, indent=1).encode()
    cols = doc["columns"]
    t = Table(rows=[[r[c] for c in cols] for r in rows], names=cols) if rows else Table(names=cols)
    for c, unit in doc.get("units", {}).items():
        if c in t.colnames:
            t[c].unit = unit
    t.meta.update(doc.get("provenance", {}))
    return table_bytes(t, fmt)
