"""Observability of the sky from ground sites: where and when a localisation can be observed.

A site sees the part of the sky above its airmass limit while the Sun is
below its twilight limit (and, optionally, far enough from the Moon).  At
one instant that region is a spherical cap centred on the zenith, so it is
selected on the HEALPix grid by :func:`gwfollow.kernels.geometry.cap_ranges`
(canonical depth-29 ranges, like every MOC inside gwfollow).  Over a window
the sky is cut into time slices, evaluated at their midpoints, and the
per-slice regions make a space-time MOC.

Model and approximations (all angles geometric, in degrees unless named
``*_rad``):

* **Airmass** is the plane-parallel ``X = sec(z)``, so ``X <= max_airmass``
  is ``altitude >= arcsin(1 / max_airmass)`` (30 deg for ``X = 2``).  A
  curved atmosphere (Hardie 1962) gives 1.9945 where ``sec z = 2``: the limit
  sits < 0.1 deg lower than the plane-parallel one.  No refraction (about
  0.03 deg at 30 deg altitude; it would raise objects slightly).
* **Zenith**: the site's geodetic vertical (WGS84), turned to the sky with
  the apparent Greenwich sidereal time (IAU 2006/2000A, ``Time.sidereal_time``)
  plus the site's longitude and the IAU 2006/2000A precession-nutation
  matrix, i.e. ``RA = apparent local sidereal time, Dec = latitude`` in the
  true equator and equinox of date, then carried to astrometric ICRS
  coordinates (aberration, light deflection) by astropy, the frame of the
  sky maps.  Using ``(LST, latitude)`` directly as ICRS coordinates would
  be wrong by the precession since J2000 (0.36 deg in 2026), more than an
  order-8 cell.  Polar motion is neglected (< 1 arcsec).
* **Distances to the zenith are measured in ICRS**.  The astrometric ->
  apparent mapping is not a rotation (annual aberration moves every star by
  up to 20.5 arcsec towards the apex), so altitudes differ from astropy's
  ``AltAz`` by up to about 21 arcsec near the airmass-2 limit and 30 arcsec
  near the horizon (measured: < 0.01 deg everywhere).
* **UT1 - UTC** comes from the IERS-A table bundled with astropy
  (``astropy-iers-data``), read directly; times outside it use 0 (at most
  0.9 s, i.e. 0.004 deg of sky rotation).  Nothing is downloaded and no
  global astropy setting is changed, so the functions are safe in worker
  threads and offline, whatever the age of the installed table.
* **Sun**: astropy's geocentric apparent position (``get_sun``); its
  altitude is taken from the same zenith, without refraction.  Solar
  parallax (8.8 arcsec) is neglected: agreement with ``AltAz`` is better
  than 0.01 deg.  ``max_sun_alt_deg = -12`` is the end of nautical
  twilight; use -18 for astronomical darkness.
* **Moon** (only when ``min_moon_sep_deg`` is set): astropy's geocentric
  position made topocentric with the site's position (the Moon's parallax
  reaches 1 deg).
* **Cells**: a cell is observable when its *centre* is (centre-inside rule
  of :mod:`gwfollow.kernels.geometry`, healpy's ``query_disc(inclusive=False)``).
  Cells crossing the airmass boundary are in or out by their centre, so the
  region matches the true cap to within one cell radius
  (``max_pixrad(order)``: 0.24 deg at order 8) along its edge; the GW
  probability is then counted exactly on those cells.
* **Slices** are judged at their midpoints: over a 15-minute slice the sky
  turns by 3.8 deg, so the per-slice region is the one of the slice's
  middle instant, not the intersection (nor union) over the slice.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import erfa
import numpy as np
import numpy.typing as npt
from astropy import units as u
from astropy.coordinates import (
    GCRS,
    ICRS,
    CartesianRepresentation,
    EarthLocation,
    UnitSphericalRepresentation,
    get_body,
    get_sun,
)
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from mocpy import STMOC

from gwfollow.errors import ConfigError, ObservabilityError
from gwfollow.kernels import geometry as kgeo
from gwfollow.kernels import probability as kprob
from gwfollow.kernels import ranges as kr
from gwfollow.regions.moc import moc_from_ranges, probability_in_ranges, ranges_of
from gwfollow.skymaps.skymap import SkyMap

if TYPE_CHECKING:  # pragma: no cover
    from astropy.time import Time
    from mocpy import MOC, STMOC

MAX_ORDER = 16
"""Deepest HEALPix order for observable regions (0.9 arcmin cells: far finer
than the airmass model; deeper orders only make the cap's edge longer)."""

MAX_SLICES = 100_000
"""Most time slices one call may compute (a guard against a mistyped step)."""

_TARGET_CHUNK = 65536
_SITE_KEYS = ("lat_deg", "lon_deg", "height_m", "max_airmass", "max_sun_alt_deg", "min_moon_sep_deg")
_SITE_REQUIRED = ("lat_deg", "lon_deg", "height_m")


def _empty_ranges() -> npt.NDArray[np.int64]:
    return np.empty((0, 2), dtype=np.int64)


CellsInput = Union[SkyMap, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


# ---------------------------------------------------------------------------- sites


@dataclass(frozen=True)
class Site:
    """An observing site and its limits.

    Attributes
    ----------
    name : str
        Short name (``"palomar"``), used in messages and products.
    lat_deg, lon_deg : float
        Geodetic (WGS84) latitude and east longitude, degrees.
    height_m : float
        Height above the WGS84 ellipsoid, metres.
    max_airmass : float
        Largest airmass (plane-parallel ``sec z``) observed; > 1.
    max_sun_alt_deg : float
        The Sun's centre must be at or below this altitude, degrees
        (-12: nautical twilight, -18: astronomical).
    min_moon_sep_deg : float or None
        When set, targets closer than this to the Moon are not observable,
        degrees.
    """

    name: str
    lat_deg: float
    lon_deg: float
    height_m: float
    max_airmass: float = 2.0
    max_sun_alt_deg: float = -12.0
    min_moon_sep_deg: float | None = None

    @property
    def min_alt_deg(self) -> float:
        """Lowest observable altitude, ``arcsin(1 / max_airmass)``, degrees."""
        return math.degrees(math.asin(1.0 / self.max_airmass))

    @property
    def zenith_radius_rad(self) -> float:
        """Radius of the observable cap around the zenith, ``arccos(1 / max_airmass)``, radians."""
        return math.acos(1.0 / self.max_airmass)

    def validate(self) -> None:
        """Raise :class:`~gwfollow.errors.ConfigError` naming the first bad value."""
        where = f"sites.{self.name}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"site name {self.name!r} must be a non-empty string")

        def num(key: str, value: Any, lo: float, hi: float, *, open_lo: bool = False) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ConfigError(f"{where}.{key}: {value!r} is not a number")
            v = float(value)
            if not math.isfinite(v) or v > hi or v < lo or (open_lo and v == lo):
                lo_s = f"({lo:g}" if open_lo else f"[{lo:g}"
                raise ConfigError(f"{where}.{key}: {value!r} is not in {lo_s}, {hi:g}]")

        num("lat_deg", self.lat_deg, -90.0, 90.0)
        num("lon_deg", self.lon_deg, -180.0, 360.0)
        num("height_m", self.height_m, -500.0, 9000.0)
        num("max_airmass", self.max_airmass, 1.0, 1e6, open_lo=True)
        num("max_sun_alt_deg", self.max_sun_alt_deg, -90.0, 90.0)
        if self.min_moon_sep_deg is not None:
            num("min_moon_sep_deg", self.min_moon_sep_deg, 0.0, 180.0)

    @classmethod
    def from_dict(cls, name: str, mapping: Mapping[str, Any]) -> Site:
        """A validated site from a configuration table.

        Parameters
        ----------
        name : str
            The table's name (``[sites.palomar]`` gives ``"palomar"``).
        mapping : mapping
            ``lat_deg``, ``lon_deg``, ``height_m`` (required) and optionally
            ``max_airmass``, ``max_sun_alt_deg``, ``min_moon_sep_deg``.

        Raises
        ------
        ConfigError
            On a missing or unknown key or a bad value.

        Examples
        --------
        >>> s = Site.from_dict("ztf", {"lat_deg": 33.3563, "lon_deg": -116.865, "height_m": 1712})
        >>> s.max_airmass, round(s.min_alt_deg, 6)
        (2.0, 30.0)
        """
        unknown = sorted(set(mapping) - set(_SITE_KEYS))
        if unknown:
            raise ConfigError(
                f"sites.{name}: unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(_SITE_KEYS)}",
            )
        missing = [k for k in _SITE_REQUIRED if k not in mapping]
        if missing:
            raise ConfigError(f"sites.{name}: missing {', '.join(missing)}")
        site = cls(name=name, **{k: mapping[k] for k in _SITE_KEYS if k in mapping})
        site.validate()
        # TOML integers (height_m = 1712) become floats once known to be numbers.
        return cls(name=name, **{k: float(mapping[k]) for k in _SITE_KEYS if k in mapping})


# Coordinates (geodetic latitude, east longitude, height) as published by the
# observatories: Palomar (ZTF, P48), CTIO (Blanco 4 m, DECam; NOIRLab), the
# Roque de los Muchachos (GOTO; IAC) and Siding Spring (ANU).  They agree with
# astropy-data's coordinates/sites.json ("Palomar", "ctio", "lapalma", "sso",
# from the IRAF observatory database) to within 0.01 deg and 40 m, far below
# what an airmass limit resolves.
KNOWN_SITES: dict[str, Site] = {
    "palomar": Site("palomar", 33.3563, -116.8650, 1712.0),
    "ctio": Site("ctio", -30.1690, -70.8063, 2207.0),
    "lapalma": Site("lapalma", 28.7603, -17.8816, 2363.0),
    "siding_spring": Site("siding_spring", -31.2734, 149.0612, 1165.0),
}


# ------------------------------------------------------------------- astropy edge


_LINE = 188  # bytes per line of finals2000A.all, newline included


@functools.lru_cache(maxsize=1)
def bundled_ut1_utc() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(mjd, ut1_utc_s)`` of the IERS-A table shipped in ``astropy-iers-data`` (``finals2000A.all``).

    Read directly as the fixed-width records of the IERS ``readme.finals2000A``
    (MJD in columns 8-15, Bulletin A UT1-UTC in 59-68, Bulletin B UT1-UTC in
    155-165), Bulletin B where it is given, as astropy's ``IERS_A`` combines
    them, and only the rows that hold a value.  This takes milliseconds where
    astropy's generic table reader takes about a second, and astropy's
    ``IERS_Auto`` (its default) would download, or refuse a stale table.
    """
    raw = np.frombuffer(Path(iers.IERS_A_FILE).read_bytes(), dtype=np.uint8)
    if raw.size % _LINE or raw.size == 0 or np.any(raw[_LINE - 1 :: _LINE] != ord("\n")):
        raise ObservabilityError(f"{iers.IERS_A_FILE} is not in the finals2000A format",
                                 hint="reinstall astropy-iers-data")
    rec = raw.reshape(-1, _LINE)

    def column(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        field = np.ascontiguousarray(rec[:, a - 1 : b]).view(f"S{b - a + 1}").ravel()
        blank = np.all(rec[:, a - 1 : b] == ord(" "), axis=1)
        out = np.full(field.shape[0], np.nan)
        out[~blank] = field[~blank].astype(np.float64)
        return out, ~blank

    mjd, _ = column(8, 15)
    ut1_a, has_a = column(59, 68)
    ut1_b, has_b = column(155, 165)
    keep = has_a | has_b
    return mjd[keep], np.where(has_b, ut1_b, ut1_a)[keep]


def ut1_minus_utc_s(t: Time) -> npt.NDArray[np.float64]:
    """UT1 - UTC at UTC times ``t``, seconds: linear between the table's days, a
    leap second's jump taken out of the step (as astropy interpolates it), 0 outside the table."""
    mjd_tab, dut_tab = bundled_ut1_utc()
    mjd = (t.jd1 - 2400000.5) + t.jd2
    i = np.searchsorted(mjd_tab, mjd, side="right")
    i1 = np.clip(i, 1, mjd_tab.shape[0] - 1)
    i0 = i1 - 1
    step = dut_tab[i1] - dut_tab[i0]
    step -= np.round(step)
    out = dut_tab[i0] + (mjd - mjd_tab[i0]) / (mjd_tab[i1] - mjd_tab[i0]) * step
    return np.where((i == 0) | (i == mjd_tab.shape[0]), 0.0, out)


def _utc_with_ut1(times: Time) -> Time:
    """A UTC copy of ``times`` whose UT1 - UTC is set, so no IERS lookup happens."""

    utc = times.utc
    t = Time(utc.jd1, utc.jd2, format="jd", scale="utc")
    t.delta_ut1_utc = ut1_minus_utc_s(t)
    return t


@dataclass(frozen=True)
class SkyStates:
    """The site's sky at instants, with what is needed to interpolate it between them
    (:func:`sky_states`).

    Attributes
    ----------
    zenith, moon : (n, 3) float64
        ICRS unit vectors (``moon`` None without a Moon limit).
    sun_alt_deg : (n,) float64
    zenith_app, sun_app, pole_app : (n, 3) float64
        The zenith, the Sun and the celestial intermediate pole (the axis of
        the Earth's rotation) as apparent geocentric (GCRS) unit vectors.
    """

    zenith: npt.NDArray[np.float64]
    sun_alt_deg: npt.NDArray[np.float64]
    moon: npt.NDArray[np.float64] | None
    zenith_app: npt.NDArray[np.float64]
    sun_app: npt.NDArray[np.float64]
    pole_app: npt.NDArray[np.float64]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _apparent_to_icrs(vec: np.ndarray, t: Time) -> np.ndarray:
    # Geocentric apparent directions (GCRS axes) -> astrometric ICRS directions.

    rep = CartesianRepresentation(vec.T, copy=False).represent_as(UnitSphericalRepresentation)
    icrs = GCRS(rep, obstime=t).transform_to(ICRS())
    return _unit(np.asarray(icrs.cartesian.xyz.value, dtype=np.float64).T)


def _sky(site: Site, times: Time, moon: bool) -> SkyStates:
    """Zenith, Sun altitude and (optionally) Moon of ``site`` at ``times`` (1-D), vectorised."""

    t = _utc_with_ut1(times)
    gast = np.asarray(t.sidereal_time("apparent", "greenwich").to_value(u.rad), dtype=np.float64)
    tt = t.tt
    pnm = erfa.pnm06a(tt.jd1, tt.jd2)  # GCRS -> true equator and equinox of date
    n = gast.shape[0]
    rot = np.zeros((n, 3, 3))
    rot[:, 0, 0] = rot[:, 1, 1] = np.cos(gast)
    rot[:, 1, 0] = np.sin(gast)
    rot[:, 0, 1] = -rot[:, 1, 0]
    rot[:, 2, 2] = 1.0
    itrs_to_gcrs = np.einsum("nji,njk->nik", pnm, rot)  # pnm^T @ Rz(GAST); no polar motion
    lat, lon = math.radians(site.lat_deg), math.radians(site.lon_deg)
    normal = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    zen_app = itrs_to_gcrs @ normal
    sun = _unit(np.asarray(get_sun(t).cartesian.xyz.to_value(u.m), dtype=np.float64).T)
    sun_alt = np.degrees(np.arcsin(np.clip(np.einsum("ni,ni->n", zen_app, sun), -1.0, 1.0)))
    moon_icrs = None
    if moon:
        loc = EarthLocation.from_geodetic(site.lon_deg * u.deg, site.lat_deg * u.deg, site.height_m * u.m)
        obs = itrs_to_gcrs @ np.array([q.to_value(u.m) for q in loc.geocentric])
        m = np.asarray(get_body("moon", t).cartesian.xyz.to_value(u.m), dtype=np.float64).T
        moon_icrs = _apparent_to_icrs(_unit(m - obs), t)
    return SkyStates(_apparent_to_icrs(zen_app, t), sun_alt, moon_icrs, zen_app, sun, itrs_to_gcrs[:, :, 2].copy())


def sky_vectors(site: Site, times: Time) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64],
                                                  npt.NDArray[np.float64] | None]:
    """The site's sky at many instants, for callers that test many targets at once.

    Parameters
    ----------
    site : Site
    times : astropy.time.Time
        A 1-D array of instants.

    Returns
    -------
    zenith : (n, 3) ndarray of float64
        The site's zenith as ICRS unit vectors (a target's ``sin(altitude)``
        is its unit vector dotted with it).
    sun_alt_deg : (n,) ndarray of float64
        Geometric altitude of the Sun, degrees.
    moon : (n, 3) ndarray of float64 or None
        The topocentric Moon as ICRS unit vectors, when ``site.min_moon_sep_deg`` is set.
    """
    _check_site(site)
    sky = _sky(site, times.reshape(-1), site.min_moon_sep_deg is not None)
    return sky.zenith, sky.sun_alt_deg, sky.moon


def sky_states(site: Site, times: Time) -> SkyStates:
    """:func:`sky_vectors` with the apparent zenith, Sun and pole, for interpolation."""
    _check_site(site)
    return _sky(site, times.reshape(-1), site.min_moon_sep_deg is not None)


def _lonlat(v: np.ndarray) -> tuple[float, float]:
    return float(math.atan2(v[1], v[0])), float(math.atan2(v[2], math.hypot(v[0], v[1])))


# -------------------------------------------------------------------- arguments


def _check_site(site: Site) -> Site:
    if not isinstance(site, Site):
        raise ConfigError(
            f"expected a Site, got {type(site).__name__}", hint="see gwfollow.targets.observability.KNOWN_SITES"
        )
    site.validate()
    return site


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_ORDER:
        raise ObservabilityError(
            f"order {order!r} is not an integer in 0..{MAX_ORDER}", hint="orders 7-9 suit most uses"
        )
    return int(order)


def _as_time(value: object, what: str) -> Time:

    try:
        t = value if isinstance(value, Time) else Time(value, scale="utc")
        t = t.utc
    except Exception as exc:  # astropy raises ValueError, TypeError, ScaleValueError...
        raise ObservabilityError(f"cannot read {what} {value!r} as a UTC time ({exc})") from None
    if not t.isscalar:
        raise ObservabilityError(f"{what} must be one instant, got shape {t.shape}")
    return t


def _positive(value: object, what: str, unit: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ObservabilityError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise ObservabilityError(f"{what} must be a positive number of {unit}, got {value!r}")
    return v


@dataclass(frozen=True)
class _Slices:
    start: Time  # (n,)
    end: Time  # (n,)
    mid: Time  # (n,)
    edges: Time  # (n + 1,): start[0], ..., start[n-1], end[n-1]


def _slices(start: object, hours: object, step_minutes: object) -> _Slices:

    t0 = _as_time(start, "start")
    total_s = _positive(hours, "hours", "hours") * 3600.0
    step_s = _positive(step_minutes, "step_minutes", "minutes") * 60.0
    n = max(1, math.ceil(total_s / step_s - 1e-9))
    if n > MAX_SLICES:
        raise ObservabilityError(
            f"{hours} h in steps of {step_minutes} min is {n} slices (at most {MAX_SLICES})",
            hint="use a longer step or a shorter window",
        )
    offs = np.minimum(np.arange(n + 1, dtype=np.float64) * step_s, total_s)
    edges = t0 + TimeDelta(offs, format="sec")
    mid = t0 + TimeDelta(0.5 * (offs[:-1] + offs[1:]), format="sec")
    return _Slices(start=edges[:-1], end=edges[1:], mid=mid, edges=edges)


def _slices_and_sky(site: Site, start: object, hours: object, step_minutes: object) -> tuple[_Slices, SkyStates]:
    """:func:`_slices` and the site's sky at their midpoints, remembered for the last few windows:
    an alert's galaxies, fields, observability and plan all ask for the same one."""
    t0 = _as_time(start, "start")
    return _cached_slices_and_sky(site, float(t0.jd1), float(t0.jd2), _positive(hours, "hours", "hours"),
                                  _positive(step_minutes, "step_minutes", "minutes"))


@functools.lru_cache(maxsize=8)
def _cached_slices_and_sky(site: Site, jd1: float, jd2: float, hours: float,
                           step_minutes: float) -> tuple[_Slices, SkyStates]:
    sl = _slices(Time(jd1, jd2, format="jd", scale="utc"), hours, step_minutes)
    sky = _sky(site, sl.mid, site.min_moon_sep_deg is not None)
    for a in (sky.zenith, sky.sun_alt_deg, sky.moon):
        if a is not None:
            a.flags.writeable = False  # shared by every caller of the cache
    return sl, sky


def _cells(skymap_or_cells: CellsInput) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(skymap_or_cells, SkyMap):
        return skymap_or_cells.ranges, skymap_or_cells.prob
    try:
        rng, prob = skymap_or_cells  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ObservabilityError(
            f"expected a SkyMap or a (cell_ranges, cell_prob) pair, got {type(skymap_or_cells).__name__}"
        ) from None
    rng = np.ascontiguousarray(rng, dtype=np.int64)
    prob = np.ascontiguousarray(prob, dtype=np.float64)
    if rng.ndim != 2 or rng.shape[1] != 2 or prob.shape != (rng.shape[0],):
        raise ObservabilityError(
            f"cell_ranges must be (n, 2) and cell_prob (n,), got {rng.shape} and {prob.shape}"
        )
    if not np.all(np.isfinite(prob)) or np.any(prob < 0):
        raise ObservabilityError("cell_prob must be finite and non-negative")
    return rng, prob


def _observable_ranges(site: Site, sky: SkyStates, k: int, order: int) -> npt.NDArray[np.int64]:
    if not sky.sun_alt_deg[k] <= site.max_sun_alt_deg:
        return _empty_ranges()
    lon, lat = _lonlat(sky.zenith[k])
    r = kgeo.cap_ranges(order, lon, lat, site.zenith_radius_rad)
    if sky.moon is not None and site.min_moon_sep_deg is not None and r.shape[0]:
        mlon, mlat = _lonlat(sky.moon[k])
        r = kr.difference(r, kgeo.cap_ranges(order, mlon, mlat, math.radians(site.min_moon_sep_deg)))
    return r


# ------------------------------------------------------------------- public API


def observable_moc_at(site: Site, time: object, order: int = 8) -> npt.NDArray[np.int64]:
    """The sky a site can observe at one instant.

    Parameters
    ----------
    site : Site
    time : astropy.time.Time or str
        One instant (UTC when a string).
    order : int
        HEALPix order of the cells, 0..16 (8: 0.23 deg cells).

    Returns
    -------
    (n, 2) ndarray of int64
        Canonical depth-29 ranges of the cells whose centre has airmass
        ``<= site.max_airmass`` (and, when set, is more than
        ``site.min_moon_sep_deg`` from the Moon); empty when the Sun is
        above ``site.max_sun_alt_deg``.

    Examples
    --------
    >>> from gwfollow.regions.moc import ranges_area_deg2
    >>> r = observable_moc_at(KNOWN_SITES["palomar"], "2026-01-15T08:00:00", order=7)
    >>> round(ranges_area_deg2(r) / 41253, 2)  # a 60 deg cap: (1 - cos 60) / 2
    0.25
    """
    _check_site(site)
    order = _check_order(order)
    t = _as_time(time, "time")
    sky = _sky(site, t.reshape(1), site.min_moon_sep_deg is not None)
    return _observable_ranges(site, sky, 0, order)


@dataclass(frozen=True, eq=False)
class ObservabilityResult:
    """What one site can observe of a sky map, slice by slice.

    Times are UTC, angles degrees, probabilities fractions of the map's
    total (0..1).

    Attributes
    ----------
    site : Site
    order : int
        HEALPix order of the observable regions' cells.
    slice_start, slice_end : astropy.time.Time
        Bounds of the ``n`` slices ``[start, end)``; the last one is cut at
        the end of the window.
    sun_alt_deg : (n,) ndarray of float64
        Geometric altitude of the Sun at each slice's midpoint, degrees.
    probability : (n,) ndarray of float64
        GW probability inside the observable region of each slice.
    ranges : tuple of (m, 2) ndarray of int64
        Observable region of each slice (canonical depth-29 ranges; empty
        in daylight).
    """

    site: Site
    order: int
    slice_start: Time
    slice_end: Time
    sun_alt_deg: npt.NDArray[np.float64]
    probability: npt.NDArray[np.float64]
    ranges: tuple[npt.NDArray[np.int64], ...] = field(repr=False)
    _cells: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] = field(repr=False)

    def __len__(self) -> int:
        return int(self.probability.shape[0])

    @property
    def dark(self) -> npt.NDArray[np.bool_]:
        """Slices whose midpoint has the Sun at or below the site's limit."""
        return self.sun_alt_deg <= self.site.max_sun_alt_deg

    def moc(self, k: int) -> MOC:
        """Observable region of slice ``k`` as a ``mocpy.MOC``."""
        return moc_from_ranges(self.ranges[k], self.order)

    def stmoc(self, time_order: int = 61) -> STMOC:
        """The observable sky over the window as a space-time MOC.

        Each slice contributes its region over ``[slice_start, slice_end)``;
        daylight slices contribute nothing, so the time coverage is the
        union of the slices with a non-empty region.

        Parameters
        ----------
        time_order : int
            Time resolution (61: one microsecond).
        """

        keep = [k for k, r in enumerate(self.ranges) if r.shape[0]]
        if not keep:
            return STMOC.new_empty(int(time_order), self.order)
        idx = np.array(keep)
        return STMOC.from_spatial_coverages(
            self.slice_start[idx],
            self.slice_end[idx],
            [self.moc(k) for k in keep],
            time_depth=int(time_order),
        )

    @functools.cached_property
    def union_ranges(self) -> npt.NDArray[np.int64]:
        """The sky observable in at least one slice (canonical depth-29 ranges)."""
        parts = [r for r in self.ranges if r.shape[0]]
        while len(parts) > 1:  # pairwise, so each union stays balanced
            parts = [kr.union(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]
        return parts[0] if parts else _empty_ranges()

    def total_observable_probability(self, region_ranges: npt.NDArray[np.int64] | MOC | None = None) -> float:
        """GW probability observable in at least one slice.

        Parameters
        ----------
        region_ranges : (n, 2) int64 canonical ranges or mocpy.MOC, optional
            Restrict to this region, e.g. a credible region from
            :func:`gwfollow.regions.moc.credible_ranges`.

        Returns
        -------
        float
            Probability of the union of all slices' regions (intersected
            with ``region_ranges`` when given), 0..1.
        """
        region = self.union_ranges
        if region_ranges is not None:
            if hasattr(region_ranges, "to_depth29_ranges"):
                other = ranges_of(region_ranges)  # type: ignore[arg-type]
            else:
                other = np.ascontiguousarray(region_ranges, dtype=np.int64)
                if other.ndim != 2 or other.shape[1] != 2 or not kr.is_canonical(other):
                    raise ObservabilityError(
                        f"region_ranges must be canonical (n, 2) depth-29 ranges, got shape {other.shape}",
                        hint="pass gwfollow.regions.moc.credible_ranges(...) output or a mocpy.MOC",
                    )
            region = kr.intersection(region, other)
        return float(kprob.probability_in_ranges(self._cells[0], self._cells[1], region))

    def best_slice(self) -> int | None:
        """Index of the slice with the most observable probability (the first on ties).

        ``None`` when nothing of the map is observable in any slice.
        """
        if len(self) == 0 or not np.any(self.probability > 0):
            return None
        return int(np.argmax(self.probability))


def observability(
    skymap_or_cells: CellsInput,
    site: Site,
    start: object,
    hours: float = 24.0,
    step_minutes: float = 15.0,
    order: int = 8,
) -> ObservabilityResult:
    """How much of a sky map a site can observe, slice by slice.

    Parameters
    ----------
    skymap_or_cells : SkyMap or (cell_ranges, cell_prob)
        The map, or any cells as depth-29 ranges ``(n, 2)`` with their
        probabilities ``(n,)``.
    site : Site
    start : astropy.time.Time or str
        Start of the window (UTC when a string).
    hours : float
        Length of the window, hours.
    step_minutes : float
        Length of each slice, minutes; the last slice is cut at the end of
        the window.
    order : int
        HEALPix order of the observable regions, 0..16.

    Returns
    -------
    ObservabilityResult

    Raises
    ------
    ConfigError
        When the site is invalid.
    ObservabilityError
        When the window, step, order or cells are invalid.

    Examples
    --------
    >>> from gwfollow import read_skymap
    >>> from gwfollow.skymaps.simulate import simulated_skymap_bytes
    >>> sm = read_skymap(simulated_skymap_bytes(seed=1))
    >>> res = observability(sm, KNOWN_SITES["ctio"], "2026-03-01T00:00", hours=12, step_minutes=60)
    >>> len(res), bool(0.0 <= res.total_observable_probability() <= 1.0)
    (12, True)
    """
    _check_site(site)
    order = _check_order(order)
    cells = _cells(skymap_or_cells)
    sl, sky = _slices_and_sky(site, start, hours, step_minutes)
    ranges = tuple(_observable_ranges(site, sky, k, order) for k in range(len(sl.mid)))
    if isinstance(skymap_or_cells, SkyMap):
        prob = [probability_in_ranges(skymap_or_cells, r) if r.shape[0] else 0.0 for r in ranges]
    else:
        prob = [float(kprob.probability_in_ranges(cells[0], cells[1], r)) if r.shape[0] else 0.0 for r in ranges]
    return ObservabilityResult(
        site=site,
        order=order,
        slice_start=sl.start,
        slice_end=sl.end,
        sun_alt_deg=sky.sun_alt_deg,
        probability=np.array(prob, dtype=np.float64),
        ranges=ranges,
        _cells=cells,
    )


def _target_vectors(ra_deg: object, dec_deg: object) -> np.ndarray:
    try:
        ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
        dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
        ra, dec = np.broadcast_arrays(ra, dec)
    except (TypeError, ValueError) as exc:
        raise ObservabilityError(f"ra_deg and dec_deg must be numbers or arrays of the same length ({exc})") from None
    if ra.ndim != 1:
        raise ObservabilityError(f"ra_deg and dec_deg must be 1-D, got shape {ra.shape}")
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ObservabilityError(f"target {i}: ({ra[i]!r}, {dec[i]!r}) is not a sky position in degrees")
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=1)


def target_observable(
    ra_deg: float | Sequence[float] | npt.NDArray[np.float64],
    dec_deg: float | Sequence[float] | npt.NDArray[np.float64],
    site: Site,
    start: object,
    hours: float = 24.0,
    step_minutes: float = 15.0,
) -> tuple[Time, npt.NDArray[np.bool_]]:
    """Which slices each target is observable in: the array form of :func:`target_windows`.

    Returns
    -------
    edges : astropy.time.Time
        The ``n + 1`` slice edges (UTC).
    observable : (m, n) ndarray of bool
        True when, at the slice's midpoint, target ``i`` has airmass
        ``<= site.max_airmass``, the Sun is at or below
        ``site.max_sun_alt_deg`` and (when set) the target is more than
        ``site.min_moon_sep_deg`` from the Moon.
    """
    _check_site(site)
    vec = _target_vectors(ra_deg, dec_deg)
    sl, sky = _slices_and_sky(site, start, hours, step_minutes)
    dark = sky.sun_alt_deg <= site.max_sun_alt_deg
    cos_lim = 1.0 / site.max_airmass  # sin(min altitude)
    cos_moon = math.cos(math.radians(site.min_moon_sep_deg)) if sky.moon is not None else 0.0
    out = np.zeros((vec.shape[0], dark.shape[0]), dtype=np.bool_)
    cols = np.flatnonzero(dark)
    if cols.size:
        zen = sky.zenith[cols].T
        moon = sky.moon[cols].T if sky.moon is not None else None
        for s in range(0, vec.shape[0], _TARGET_CHUNK):
            v = vec[s : s + _TARGET_CHUNK]
            ok = v @ zen >= cos_lim  # sin(altitude) from the ICRS zenith
            if moon is not None:
                ok &= v @ moon < cos_moon
            out[s : s + _TARGET_CHUNK, cols] = ok
    return sl.edges, out


def mask_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of True in each row of a 2-D mask: ``(row, first, end)``, ``end`` exclusive, row-major.

    Examples
    --------
    >>> [a.tolist() for a in mask_runs(np.array([[1, 1, 0, 1], [0, 0, 0, 0]], dtype=bool))]
    [[0, 0], [0, 3], [2, 4]]
    """
    m, n = mask.shape
    pad = np.zeros((m, n + 2), dtype=np.int8)
    pad[:, 1:-1] = mask
    d = np.diff(pad, axis=1)
    rows, first = np.nonzero(d == 1)
    _, end = np.nonzero(d == -1)
    return rows, first, end


def target_windows(
    ra_deg: float | Sequence[float] | npt.NDArray[np.float64],
    dec_deg: float | Sequence[float] | npt.NDArray[np.float64],
    site: Site,
    start: object,
    hours: float = 24.0,
    step_minutes: float = 15.0,
) -> list[list[tuple[Time, Time]]]:
    """When each target can be observed from a site.

    A slice is observable for a target when, at its midpoint, the target's
    airmass is ``<= site.max_airmass`` in darkness (see
    :func:`target_observable`); consecutive observable slices merge into one
    window, so windows are quantised to slice edges.

    Parameters
    ----------
    ra_deg, dec_deg : float or array of float
        ICRS positions of ``m`` targets, degrees.
    site : Site
    start : astropy.time.Time or str
        Start of the window (UTC when a string).
    hours : float
        Length of the window, hours.
    step_minutes : float
        Time resolution, minutes.

    Returns
    -------
    list of list of (Time, Time)
        For each target, its windows ``(start, end)`` (UTC) in time order;
        an empty list when it is never observable.

    Examples
    --------
    >>> w = target_windows([150.0, 0.0], [-60.0, 80.0], KNOWN_SITES["siding_spring"],
    ...                    "2026-04-01T06:00", hours=12, step_minutes=30)
    >>> len(w[0]) >= 1, w[1]   # the second target never rises at Siding Spring
    (True, [])
    """
    edges, mask = target_observable(ra_deg, dec_deg, site, start, hours, step_minutes)
    rows, first, end = mask_runs(mask)
    edge = [edges[i] for i in range(len(edges))]
    out: list[list[tuple[Time, Time]]] = [[] for _ in range(mask.shape[0])]
    for r, a, b in zip(rows.tolist(), first.tolist(), end.tolist()):
        out[r].append((edge[a], edge[b]))
    return out


__all__ = [
    "KNOWN_SITES",
    "MAX_ORDER",
    "ObservabilityError",
    "ObservabilityResult",
    "Site",
    "bundled_ut1_utc",
    "mask_runs",
    "observability",
    "observable_moc_at",
    "SkyStates",
    "sky_states",
    "sky_vectors",
    "target_observable",
    "target_windows",
    "ut1_minus_utc_s",
]
