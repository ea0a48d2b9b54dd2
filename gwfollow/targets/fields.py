"""Telescope fields: footprints, tile grids, executed pointings, and fields ranked by probability.

A field of view (:class:`FieldOfView`) centred on a position gives a
footprint MOC (:func:`field_footprint_ranges`); a telescope is a tile grid
(field id -> centre, :func:`read_field_grid`) and a field of view.  Executed
pointings become a space-time coverage (:func:`pointings_to_stmoc`).

For a sky map, the fields whose footprint touches the credible region, the
probability in each and what each adds to those already chosen are all
counted on the telescope's footprint grid (:mod:`gwfollow.targets.footprints`,
built once per telescope).  :func:`candidate_fields` is the coarse
alternative (a k-d tree on unit vectors) for grids not worth preparing.  The greedy selection adds, at each
step, the field that adds the most probability not yet covered (overlapping
fields are not counted twice) until the target cumulative probability is
reached (the classic greedy algorithm for maximum coverage, Nemhauser et al.
1978; probability coverage is submodular, so a lazy priority queue is exact).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.coordinates import Angle, Latitude, Longitude
from astropy.table import Table
from mocpy import MOC

from gwfollow.errors import CoverageError, FieldsError
from gwfollow.kernels import ranges as kr
from gwfollow.kernels.geometry import max_pixrad, nest_to_lonlat
from gwfollow.regions.coverage import Coverage
from gwfollow.regions.moc import credible_ranges, ranges_of
from gwfollow.regions.mocio import moc_name_of
from gwfollow.regions.timeaxis import (
    TIME_DEPTH,
    IntRanges,
    SpaceTimeRanges,
    times_to_us,
)
from gwfollow.skymaps.skymap import SkyMap
from gwfollow.targets.footprints import CACHE_FORMAT, FootprintGrid
from gwfollow.version import __version__

log = logging.getLogger(__name__)

FOV_SHAPES = ("square", "circle", "rectangle")


@dataclass(frozen=True)
class FieldOfView:
    """A telescope's field of view, in degrees.

    Attributes
    ----------
    shape : {"square", "circle", "rectangle"}
    width_deg : float
        Side (square) or east-west side (rectangle, before rotation).
    height_deg : float
        North-south side of a rectangle (equal to ``width_deg`` for a square).
    radius_deg : float
        Radius of a circle.
    rotation_deg : float
        Position angle of the north-south axis, east of north.

    Boxes follow mocpy's ``MOC.from_box``: the sides and the central cross are
    great circles, a close approximation of a camera's footprint for fields
    of a few degrees.  Cells the border crosses are included, so footprints
    slightly over-cover at coarse orders.
    """

    shape: str
    width_deg: float = 0.0
    height_deg: float = 0.0
    radius_deg: float = 0.0
    rotation_deg: float = 0.0

    @classmethod
    def square(cls, side_deg: float, rotation_deg: float = 0.0) -> FieldOfView:
        """A square field ``side_deg`` on a side."""
        return cls("square", float(side_deg), float(side_deg), 0.0, float(rotation_deg)).validate()

    @classmethod
    def rectangle(cls, width_deg: float, height_deg: float, rotation_deg: float = 0.0) -> FieldOfView:
        """A rectangle ``width_deg`` (east-west) by ``height_deg`` (north-south)."""
        return cls("rectangle", float(width_deg), float(height_deg), 0.0, float(rotation_deg)).validate()

    @classmethod
    def circle(cls, radius_deg: float) -> FieldOfView:
        """A circular field of ``radius_deg``."""
        return cls("circle", 0.0, 0.0, float(radius_deg)).validate()

    def validate(self) -> FieldOfView:
        """Check the sizes; return ``self``."""
        if self.shape not in FOV_SHAPES:
            raise CoverageError(f"shape {self.shape!r} is not one of {', '.join(FOV_SHAPES)}", source="fov")
        if self.shape == "circle":
            if not 0 < self.radius_deg < 90:
                raise CoverageError(f"radius {self.radius_deg} deg is not in (0, 90)", source="fov")
        elif not (0 < self.width_deg < 180 and 0 < self.height_deg < 180):
            raise CoverageError(f"sides {self.width_deg} x {self.height_deg} deg are not in (0, 180)",
                                source="fov")
        if self.shape == "square" and self.width_deg != self.height_deg:
            raise CoverageError("a square has equal sides", source="fov")
        return self


ZTF_FOV = FieldOfView.square(6.86)
"""ZTF's 47 deg2 camera as a 6.86 deg square (CCD gaps ignored)."""


def footprint_outline(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, fov: FieldOfView,
                      samples_per_side: int = 1) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Outlines of fields centred at ``(ra_deg, dec_deg)``, in degrees.

    The outline is drawn in the gnomonic (tangent-plane) projection at each
    centre, where great circles are straight lines, and projected back; the
    sides of a box are therefore great circles, as in :class:`FieldOfView`.
    Vertices run clockwise in (east, north), i.e. counter-clockwise seen
    from the centre of the sphere: the winding of a DALI ``polygon`` (IVOA
    DALI 1.1, section 3.3.7).  A circle is a 24-gon (times ``samples_per_side``).

    Parameters
    ----------
    ra_deg, dec_deg : array_like, shape (n,)
        Field centres.
    fov : FieldOfView
    samples_per_side : int
        Points per side of a box (1: the corners only, as for ``s_region``;
        more for a smooth plotted line).  The outline is not closed.

    Returns
    -------
    ra, dec : ndarray, shape (n, m)
        Right ascension continuous from the centre's (it may leave [0, 360);
        take ``% 360`` for a canonical value) and declination, in degrees.
    """
    ra0 = np.radians(np.atleast_1d(np.asarray(ra_deg, dtype=float)))[:, None]
    dec0 = np.radians(np.atleast_1d(np.asarray(dec_deg, dtype=float)))[:, None]
    k = max(int(samples_per_side), 1)
    if fov.shape == "circle":
        t = -np.linspace(0.0, 2 * np.pi, 24 * k, endpoint=False)
        x = np.tan(np.radians(fov.radius_deg)) * np.cos(t)
        y = np.tan(np.radians(fov.radius_deg)) * np.sin(t)
    else:
        hw = np.tan(np.radians(fov.width_deg / 2))
        hh = np.tan(np.radians(fov.height_deg / 2))
        s = np.linspace(-1.0, 1.0, k, endpoint=False)
        # South-west -> north-west -> north-east -> south-east (clockwise in east, north).
        x = np.concatenate([np.full(k, -hw), s * hw, np.full(k, hw), -s * hw])
        y = np.concatenate([s * hh, np.full(k, hh), -s * hh, np.full(k, -hh)])
        rot = np.radians(fov.rotation_deg)
        x, y = x * np.cos(rot) - y * np.sin(rot), x * np.sin(rot) + y * np.cos(rot)
    # Inverse gnomonic projection (x east, y north); Calabretta & Greisen 2002, A&A 395, 1077.
    rho = np.hypot(x, y)[None, :]
    c = np.arctan(rho)
    x = x[None, :]
    y = y[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(dec0) + np.where(rho > 0, y * np.sin(c) * np.cos(dec0) / rho, 0.0))
    ra = ra0 + np.arctan2(x * np.sin(c), rho * np.cos(dec0) * np.cos(c) - y * np.sin(dec0) * np.sin(c))
    return np.degrees(ra), np.degrees(dec)


def footprint_polygons(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, fov: FieldOfView,
                       samples_per_side: int = 1) -> npt.NDArray[np.float64]:
    """Field footprints as DALI polygons: rows ``ra1 dec1 ra2 dec2 ...`` in degrees, RA in [0, 360).

    The value of an ObsCore / DALI ``s_region`` column of ``xtype="polygon"``;
    ``samples_per_side`` as in :func:`footprint_outline` (more vertices on the
    same great-circle sides, so that boxes and circles can share one column).
    """
    ra, dec = footprint_outline(ra_deg, dec_deg, fov, samples_per_side)
    out = np.empty((ra.shape[0], 2 * ra.shape[1]), dtype=np.float64)
    out[:, 0::2] = np.round(ra % 360.0, 7) % 360.0
    out[:, 1::2] = np.round(dec, 7)
    return out



_FOOTPRINTS: dict[tuple[float, float, FieldOfView, int], IntRanges] = {}
_FOOTPRINTS_MAX = 20_000  # a few whole grids (ZTF: 1,778 fields, ~1 kB each)


def _compute_footprints(ra_deg: np.ndarray, dec_deg: np.ndarray, fov: FieldOfView, order: int) -> list[IntRanges]:
    """Footprints of many fields in one mocpy call (computed in Rust, in parallel)."""

    n = ra_deg.shape[0]
    lon = Longitude(ra_deg * u.deg)
    lat = Latitude(dec_deg * u.deg)
    # mocpy's batch calls run on a pool of threads made per call: worth it
    # for a grid, not for one field (thousands of single calls in a loop
    # made the machine thrash), so small batches run on one thread.
    threads = None if n >= 64 else 1
    if fov.shape == "circle":
        if n == 1:
            mocs = [MOC.from_cone(lon[0], lat[0], radius=Angle(fov.radius_deg * u.deg), max_depth=order)]
        else:
            mocs = MOC.from_cones(lon=lon, lat=lat, radius=Angle(np.full(n, fov.radius_deg) * u.deg),
                                  max_depth=order, n_threads=threads)
    else:
        # mocpy wants a >= b and measures the angle of the a-axis east of north.
        half_ns, half_ew = fov.height_deg / 2, fov.width_deg / 2
        if half_ns >= half_ew:
            a, b, angle = half_ns, half_ew, fov.rotation_deg
        else:
            a, b, angle = half_ew, half_ns, fov.rotation_deg + 90.0
        if n == 1:
            mocs = [MOC.from_box(lon[0], lat[0], a=Angle(a * u.deg), b=Angle(b * u.deg), angle=Angle(angle * u.deg),
                                 max_depth=order)]
        else:
            mocs = MOC.from_boxes(lon=lon, lat=lat, a=Angle(np.full(n, a) * u.deg), b=Angle(np.full(n, b) * u.deg),
                                  angle=Angle(np.full(n, angle) * u.deg), max_depth=order, n_threads=threads)
    out = []
    for m in mocs:
        r = ranges_of(m)
        r.flags.writeable = False
        out.append(r)
    return out


def field_footprints(ra_deg: Any, dec_deg: Any, fov: FieldOfView, order: int = 10) -> list[IntRanges]:
    """Footprints (canonical depth-29 ranges, read-only) of fields centred on
    (``ra_deg``, ``dec_deg``); those not yet cached in this process are
    computed together in one call."""
    fov.validate()
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CoverageError(f"field centre ({ra[i]}, {dec[i]}) is not a sky position", source="field")
    if not 0 <= int(order) <= 29:
        raise CoverageError(f"order {order} is not in 0..29", source="field")
    global _FOOTPRINTS
    keys = [(float(a) % 360.0, float(d), fov, int(order)) for a, d in zip(ra, dec)]
    cache = _FOOTPRINTS
    todo = list(dict.fromkeys(k for k in keys if k not in cache))
    if not todo:
        return [cache[k] for k in keys]
    made = dict(zip(todo, _compute_footprints(np.array([k[0] for k in todo]), np.array([k[1] for k in todo]),
                                              fov, int(order))))
    out = [made[k] if k in made else cache[k] for k in keys]
    if len(cache) + len(made) > _FOOTPRINTS_MAX:
        _FOOTPRINTS = dict(made)  # rebound, not cleared: a concurrent reader keeps its snapshot
    else:
        _FOOTPRINTS.update(made)
    return out


def field_footprint_ranges(ra_deg: float, dec_deg: float, fov: FieldOfView, order: int = 10) -> IntRanges:
    """Canonical depth-29 ranges of a field of view centred on (``ra_deg``, ``dec_deg``).

    Parameters
    ----------
    ra_deg, dec_deg : float
        Field centre (ICRS), degrees.
    fov : FieldOfView
    order : int
        HEALPix order of the footprint's border cells (10: 3.4 arcmin).

    Returns
    -------
    (n, 2) ndarray of int64
        Read-only (results are cached per field).

    Examples
    --------
    >>> from gwfollow.regions.moc import ranges_area_deg2
    >>> r = field_footprint_ranges(10.0, 20.0, FieldOfView.square(6.86), order=10)
    >>> 47.0 < ranges_area_deg2(r) < 49.0
    True
    """
    return field_footprints(ra_deg, dec_deg, fov, order)[0]


def read_field_grid(path: str | os.PathLike[str]) -> dict[int, tuple[float, float]]:
    """Field centres of a tile grid: ``{field id: (ra_deg, dec_deg)}``.

    Reads whitespace- or comma-separated files whose first three columns are
    ID, RA, Dec (ZTF ``ZTF_Fields.txt`` with its ``%`` header, DECam CSV,
    gwemopt ``.tess``); a header naming ``ID``/``field_id``, ``RA`` and
    ``Dec`` columns is used when present.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise CoverageError(f"cannot read ({exc.strerror})", source=str(p)) from None
    cols = (0, 1, 2)
    out: dict[int, tuple[float, float]] = {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        header = s.startswith(("%", "#"))
        tokens = [t.strip() for t in (s.lstrip("%#").split(",") if "," in s else s.lstrip("%#").split())]
        if header or not _is_number(tokens[0]):
            names = [t.lower() for t in tokens]
            idx = {k: names.index(k) for k in ("id", "field_id", "field", "ra", "dec") if k in names}
            fid = next((idx[k] for k in ("id", "field_id", "field") if k in idx), None)
            if fid is not None and "ra" in idx and "dec" in idx:
                cols = (fid, idx["ra"], idx["dec"])
            continue
        try:
            out[int(float(tokens[cols[0]]))] = (float(tokens[cols[1]]), float(tokens[cols[2]]))
        except (IndexError, ValueError):
            raise CoverageError(f"line {n} is not 'ID RA Dec': {s[:60]!r}", source=str(p)) from None
    if not out:
        raise CoverageError("no fields", source=str(p))
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def pointings_to_stmoc(
    pointings: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    field_grid: str | os.PathLike[str] | Mapping[int, tuple[float, float]],
    fov: FieldOfView,
    *, order: int = 10, name: str | None = None,
) -> Coverage:
    """Executed pointings as a space-time coverage.

    Parameters
    ----------
    pointings : path-like or iterable of mappings
        A CSV file or rows with ``field_id`` (or ``ra``/``dec`` in degrees),
        ``obstime`` (UTC, ISO 8601) and ``exposure_time`` (seconds): the
        columns of SkyPortal's executed-observation exports.
    field_grid : path-like or mapping
        The telescope's fields (:func:`read_field_grid`).
    fov : FieldOfView
    order : int
        HEALPix order of the footprints.
    name : str, optional
        Name of the coverage (the file name by default).

    Returns
    -------
    Coverage
        ``kind="spacetime"``: each exposure's footprint during
        ``[obstime, obstime + exposure_time)``; overlapping exposures are
        merged (:meth:`~gwfollow.regions.coverage.SpaceTimeRanges.from_blocks`).
    """
    fov.validate()
    if isinstance(pointings, (str, os.PathLike)):
        src = str(pointings)
        try:
            with open(pointings, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise CoverageError(f"cannot read ({exc.strerror})", source=src) from None
        label = name or moc_name_of(Path(src))
    else:
        src = "<rows>"
        rows = list(pointings)
        label = name or "pointings"
    grid = read_field_grid(field_grid) if isinstance(field_grid, (str, os.PathLike)) else field_grid
    if not rows:
        raise CoverageError("no pointings", source=src)
    centres: list[tuple[float, float]] = []
    times: list[str] = []
    exposures = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        try:
            if row.get("field_id") not in (None, ""):
                fid = int(float(row["field_id"]))
                if fid not in grid:
                    raise CoverageError(f"row {i + 1}: field {fid} is not in the field grid", source=src)
                ra, dec = grid[fid]
                centres.append((float(ra), float(dec)))
            else:
                centres.append((float(row["ra"]), float(row["dec"])))
            times.append(str(row["obstime"]))
            exposures[i] = float(row["exposure_time"])
        except KeyError as exc:
            raise CoverageError(f"row {i + 1} has no {exc.args[0]!r}", source=src,
                                hint="need field_id (or ra, dec), obstime and exposure_time") from None
        except (TypeError, ValueError) as exc:
            raise CoverageError(f"row {i + 1}: {exc}", source=src) from None
    if np.any(~np.isfinite(exposures) | (exposures <= 0)):
        k = int(np.argmax(~np.isfinite(exposures) | (exposures <= 0)))
        raise CoverageError(f"row {k + 1}: exposure_time {exposures[k]} s is not positive", source=src)
    try:
        t0 = times_to_us(times)
    except ValueError as exc:
        raise CoverageError(f"cannot read obstime values ({exc})", source=src) from None
    t1 = t0 + np.round(exposures * 1e6).astype(np.int64)
    cen = np.array(centres, dtype=np.float64).reshape(-1, 2)
    feet = field_footprints(cen[:, 0], cen[:, 1], fov, order) if len(centres) else []
    blocks = [(np.array([[a, b]], dtype=np.int64), f) for f, a, b in zip(feet, t0.tolist(), t1.tolist())]
    st = SpaceTimeRanges.from_blocks(blocks)
    return Coverage(label, "spacetime", src, int(order), time_order=TIME_DEPTH, spacetime=st)


@dataclass(frozen=True)
class Telescope:
    """A tile grid and field of view.

    Attributes
    ----------
    name : str
    ids : ndarray of int64
    ra, dec : ndarray of float64
        Field centres, degrees.
    fov : FieldOfView
    grid_source : str
        File or ``generated``.
    """

    name: str
    ids: npt.NDArray[np.int64]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    fov: FieldOfView
    grid_source: str = ""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_file(cls, name: str, grid: str | os.PathLike[str], fov: FieldOfView) -> Telescope:
        """Read a tile grid (ZTF ``.txt``, DECam/ULTRASAT CSV, gwemopt ``.tess``)."""
        centres = read_field_grid(grid)
        ids = np.array(sorted(centres), dtype=np.int64)
        ra = np.array([centres[i][0] for i in ids], dtype=np.float64)
        dec = np.array([centres[i][1] for i in ids], dtype=np.float64)
        return cls(name, ids, ra, dec, fov, str(grid))

    @classmethod
    def generated(cls, name: str, fov: FieldOfView, overlap: float = 0.05) -> Telescope:
        """A tiling of the whole sky for ``fov`` (the embedded default grid).

        Rings of constant declination spaced by the field height (less the
        overlap fraction); along each ring, fields spaced by the width over
        ``cos(dec)`` of the ring's edge nearer the equator, where the ring is
        widest, so that neighbouring fields overlap everywhere else.
        """
        if fov.shape == "circle":
            w = h = fov.radius_deg * math.sqrt(2.0)
        else:
            w, h = fov.width_deg, fov.height_deg
        step_dec = h * (1 - overlap)
        n_rings = int(math.ceil(180.0 / step_dec))
        decs = -90 + (np.arange(n_rings) + 0.5) * (180.0 / n_rings)
        ras, dcs = [], []
        for d in decs:
            near = max(0.0, abs(d) - h / 2)  # the ring's widest parallel
            n = max(3, int(math.ceil(360.0 * math.cos(math.radians(near)) / (w * (1 - overlap)))))
            ras.extend((np.arange(n) + 0.5) * 360.0 / n)
            dcs.extend([d] * n)
        ids = np.arange(1, len(ras) + 1, dtype=np.int64)
        return cls(name, ids, np.array(ras), np.array(dcs), fov, "generated")


def telescope_from_config(tc: Any) -> Telescope:
    """A :class:`Telescope` from a ``[telescopes.NAME]`` table (:class:`~gwfollow.config.TelescopeConfig`)."""
    if tc.fov_shape == "circle":
        fov = FieldOfView.circle(tc.fov_radius_deg)
    elif tc.fov_shape == "square":
        fov = FieldOfView.square(tc.fov_width_deg, tc.rotation_deg)
    else:
        fov = FieldOfView.rectangle(tc.fov_width_deg, tc.fov_height_deg or tc.fov_width_deg, tc.rotation_deg)
    if tc.grid == "generated":
        return Telescope.generated(tc.name, fov)
    return Telescope.from_file(tc.name, grid_path(tc.grid), fov)


PACKAGED_GRIDS = {"ZTF_Fields.txt": ("ztffields", "data/ztf_fields.txt")}
"""Real tile grids that come with gwfollow's dependencies: name -> (distribution, file in it).

The ZTF primary grid is the one the ``ztffields`` package ships (Apache-2.0): the
fields of ZTF's ``ZTF_Fields.txt`` except the two polar fields 1896 and 1897
(Dec +87.4 deg).  Other grids (DECam, ULTRASAT, GOTO) are configured by path."""


def grid_path(spec: str) -> Path:
    """The file of a grid: ``package:ZTF_Fields.txt`` (a grid that comes with gwfollow) or a path.

    Examples
    --------
    >>> grid_path("package:ZTF_Fields.txt").name
    'ztf_fields.txt'
    """
    if spec.startswith("package:"):
        name = spec[len("package:"):]
        if name not in PACKAGED_GRIDS:
            raise FieldsError(f"no packaged grid {name!r}", hint=f"packaged grids: {', '.join(PACKAGED_GRIDS)}")
        dist, rel = PACKAGED_GRIDS[name]
        # Located without importing the package (its __init__ pulls in plotting libraries).
        spec_ = importlib.util.find_spec(dist)
        if spec_ is None or not spec_.submodule_search_locations:
            raise FieldsError(f"grid {name!r} needs the {dist!r} package", hint=f"pip install {dist}")
        return Path(spec_.submodule_search_locations[0]) / rel
    return Path(spec).expanduser()


@dataclass(frozen=True)
class RankedFields:
    """Fields in greedy order.

    Attributes
    ----------
    rows : ndarray of int64
        Rows of the telescope's grid, in selection order.
    prob : ndarray
        Probability enclosed by each field alone.
    marginal : ndarray
        Probability it added when selected.
    cumprob : ndarray
        Probability of the union of the fields up to this one.
    selected : ndarray of bool
        Within the greedy selection reaching ``target``.
    """

    telescope: Telescope
    rows: npt.NDArray[np.int64]
    prob: npt.NDArray[np.float64]
    marginal: npt.NDArray[np.float64]
    cumprob: npt.NDArray[np.float64]
    selected: npt.NDArray[np.bool_]
    target: float
    n_candidates: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def table(self):
        """Astropy Table ``rank, field_id, ra, dec, prob, marginal_prob, cumprob, selected, s_region``

        ``s_region`` is each footprint as a DALI polygon (see :func:`footprint_polygons`).
        """

        t = Table()
        t["rank"] = np.arange(1, len(self) + 1)
        t["field_id"] = self.telescope.ids[self.rows]
        t["ra"] = self.telescope.ra[self.rows] * u.deg
        t["dec"] = self.telescope.dec[self.rows] * u.deg
        t["prob"] = self.prob
        t["marginal_prob"] = self.marginal
        t["cumprob"] = self.cumprob
        t["selected"] = self.selected
        t["s_region"] = footprint_polygons(t["ra"].value, t["dec"].value, self.telescope.fov) * u.deg
        t.meta.update({k: v for k, v in self.provenance.items() if isinstance(v, (str, int, float))})
        return t


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def candidate_fields(telescope: Telescope, region: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Rows of fields whose footprint may touch ``region`` (coarse filter)."""
    # scipy is heavy and needed only here.
    from scipy.spatial import cKDTree


    if region.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    order = 7  # cells of 0.46 deg
    # The order-7 pixels of the region (its ranges widened to whole pixels).
    deg = kr.degrade(region, order) >> (2 * (29 - order))
    lengths = deg[:, 1] - deg[:, 0]
    pix7 = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(deg[:, 0] - (np.cumsum(lengths) - lengths),
                                                                     lengths)
    lon, lat = nest_to_lonlat(order, pix7)
    vec = _unit_vectors(np.degrees(lon), np.degrees(lat))
    fov = telescope.fov
    half_diag = fov.radius_deg if fov.shape == "circle" else 0.5 * math.hypot(fov.width_deg, fov.height_deg)
    reach = math.radians(half_diag + 0.05) + max_pixrad(order)
    chord = 2 * math.sin(min(reach, math.pi) / 2)
    tree = cKDTree(vec)
    d, _ = tree.query(_unit_vectors(telescope.ra, telescope.dec), k=1, distance_upper_bound=chord)
    return np.flatnonzero(np.isfinite(d)).astype(np.int64)


_GRIDS: dict[tuple[Any, ...], FootprintGrid] = {}
_GRIDS_MAX = 8  # telescopes x orders kept per process (ZTF at order 10: ~20 MB)


def footprint_grid(telescope: Telescope, order: int = 10,
                   cache_dir: str | os.PathLike[str] | None = None) -> FootprintGrid:
    """The footprints of all of a telescope's fields on one atom grid, cached per process.

    Built on first use (the footprints of every field, then one sort of
    their bounds); a worker builds it before its first alert
    (:meth:`gwfollow.products.resources.Resources.warm`).  With ``cache_dir`` the
    grid is also kept on disk there, in a file named by the SHA-256 of the
    field centres, the field of view and the order
    (:func:`footprint_cache_path`), so a new process loads it instead of
    building it.
    """
    global _GRIDS
    key = (telescope.name, telescope.fov, int(order), telescope.ra.tobytes(), telescope.dec.tobytes())
    grid = _GRIDS.get(key)
    if grid is None:
        path = footprint_cache_path(telescope, order, cache_dir) if cache_dir else None
        grid = FootprintGrid.load(path, len(telescope), int(order)) if path is not None else None
        if grid is None:
            feet = field_footprints(telescope.ra, telescope.dec, telescope.fov, order) if len(telescope) else []
            grid = FootprintGrid.from_footprints(feet, int(order))
            if path is not None:
                try:
                    grid.save(path)
                except OSError as exc:  # a read-only or full disk costs the next process a rebuild, no more
                    log.warning("footprint cache %s not written: %s", path, exc)
        if len(_GRIDS) >= _GRIDS_MAX:
            _GRIDS = {}  # rebound, not cleared: a concurrent reader keeps its snapshot
        _GRIDS[key] = grid
    return grid


def footprint_cache_path(telescope: Telescope, order: int, cache_dir: str | os.PathLike[str]) -> Path:
    """File of a telescope's footprint grid in ``cache_dir``: named by the
    SHA-256 of the grid's content (field centres), field of view and order,
    so an edited grid or FOV never meets a stale file."""
    h = hashlib.sha256()
    h.update(f"{CACHE_FORMAT}|{int(order)}|{dataclasses.astuple(telescope.fov)!r}|{len(telescope)}|".encode())
    h.update(np.ascontiguousarray(telescope.ra, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(telescope.dec, dtype="<f8").tobytes())
    return Path(os.path.expanduser(os.fspath(cache_dir))) / f"footprints-{h.hexdigest()[:32]}.npz"


def field_probabilities(skymap: SkyMap, telescope: Telescope, order: int = 10) -> npt.NDArray[np.float64]:
    """Probability of ``skymap`` in each field of ``telescope`` (by grid row), fractions of the total.

    One merge of the map's cells with the telescope's :func:`footprint_grid`;
    a cell partly inside a footprint counts pro rata of its depth-29 pixels,
    as :func:`~gwfollow.regions.moc.probability_in_ranges` counts it (equal
    to it up to rounding, ~1e-16 absolute).

    Examples
    --------
    >>> from gwfollow import read_skymap
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1))
    >>> p = field_probabilities(sm, Telescope.generated("g", ZTF_FOV), order=8)
    >>> bool(0.99 < p.sum() < 3)
    True
    """
    return footprint_grid(telescope, order).probabilities(skymap)


def rank_fields(skymap: SkyMap, telescope: Telescope, *, target: float = 0.9, level: float = 0.999,
                order: int = 10, max_fields: int | None = None,
                region: npt.NDArray[np.int64] | None = None,
                candidates: npt.NDArray[np.int64] | None = None) -> RankedFields:
    """Rank a telescope's fields for a sky map.

    Parameters
    ----------
    skymap : SkyMap
    telescope : Telescope
    target : float
        Cumulative probability the greedy selection aims for.
    level : float
        The fields listed are those whose footprint touches the credible
        region at this level.
    order : int
        HEALPix order of the footprints' border cells.
    max_fields : int, optional
        List at most this many fields.
    region : (n, 2) int64, optional
        The credible region at ``level`` (``include`` boundary) when the caller has it already.
    candidates : (k,) int64, optional
        Grid rows allowed at all (for instance those observable from a site,
        :func:`gwfollow.targets.observable_fields.rank_observable_fields`); the
        others are neither listed nor selected.

    Returns
    -------
    RankedFields
        Probabilities are fractions of the map's total (0..1).

    Notes
    -----
    Runs on the telescope's :func:`footprint_grid` (built on first use):
    which fields touch the region, the probability in each and what each adds
    to those already selected are sums over atom spans, with no set algebra.
    """

    if not 0 < target <= 1:
        raise FieldsError(f"target {target} is not in (0, 1]")
    if region is None:
        region = credible_ranges(skymap, [level], "include")[0]
    grid = footprint_grid(telescope, order)
    cand = grid.touching(region).astype(np.int64)
    if candidates is not None:
        cand = cand[np.isin(cand, np.asarray(candidates, dtype=np.int64))]
    cumulative = grid.cumulative(skymap)
    prob = grid.probabilities(skymap, cumulative)[cand]
    limit = len(cand) if max_fields is None else min(max_fields, len(cand))
    # Lazy greedy (kernels.footprints.greedy_cover): the probability each field
    # adds is counted on the atoms not yet covered; the running sum of those
    # gains is the probability of the union.
    sel, gains = grid.greedy(cumulative, cand, prob, limit)
    cumarr = np.cumsum(gains)
    n_sel = int(np.searchsorted(cumarr, target, side="left")) + 1 if len(cumarr) else 0
    selected = np.arange(len(cumarr)) < min(n_sel, len(cumarr))
    prov = {"skymap_sha256": skymap.sha256, "telescope": telescope.name, "grid": Path(telescope.grid_source).name,
            "fov": telescope.fov.shape, "target": target, "level": level, "gwfollow": __version__}
    return RankedFields(telescope, cand[sel], prob[sel], gains, cumarr, selected, target, int(len(cand)), prov)
