"""Observability against astropy's AltAz (no refraction) at sample points and times.

The reference is astropy's full chain (ICRS -> AltAz with IERS data,
``pressure=0``).  gwfollow draws a cap around the ICRS zenith and selects
HEALPix cells by their centre, so for a sample point the two may disagree
only when the point is near the airmass boundary: the point lies within
``max_pixrad(order)`` of its cell's centre, and the centre decides, so a
point closer than that to the boundary can fall on the other side.  The
model itself (ICRS distances instead of apparent ones, geocentric Sun,
no polar motion) adds < 0.01 deg, the ``MODEL_DEG`` slack below.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body, get_sun
from astropy.time import Time, TimeDelta
from astropy.utils import iers
from gwfollow.kernels import geometry as kgeo
from gwfollow.kernels import healpix as khp
from gwfollow.kernels import ranges as kr
from mocpy import MOC, TimeMOC

from gwfollow import read_skymap
from gwfollow.errors import ConfigError, GwfollowError
from gwfollow.regions.moc import (
    credible_ranges,
    moc_from_ranges,
    probability_in_moc,
    probability_in_ranges,
    ranges_of,
)
from gwfollow.targets.observability import (
    KNOWN_SITES,
    ObservabilityError,
    Site,
    observability,
    observable_moc_at,
    target_observable,
    target_windows,
)

MODEL_DEG = 0.01
# Dates inside the IERS table bundled with astropy-iers-data (measured values).
NIGHTS = [
    ("palomar", "2026-01-15T03:00:00"),
    ("ctio", "2025-06-20T23:00:00"),
    ("lapalma", "2025-09-03T21:30:00"),
    ("siding_spring", "2026-03-10T10:00:00"),
]


@pytest.fixture(autouse=True, scope="module")
def _offline_iers():
    """The astropy reference must not download IERS tables (gwfollow itself never does)."""
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp(
        "auto_max_age", None
    ), iers.conf.set_temp("iers_degraded_accuracy", "warn"):
        yield


@pytest.fixture(scope="module")
def skymap(sim_bytes: bytes):
    return read_skymap(sim_bytes)  # centred at RA 120, Dec 30


def _loc(site: Site) -> EarthLocation:
    return EarthLocation.from_geodetic(site.lon_deg * u.deg, site.lat_deg * u.deg, site.height_m * u.m)


def _ref_alt(ra: np.ndarray, dec: np.ndarray, site: Site, times: Time) -> np.ndarray:
    """astropy AltAz altitude (degrees, no refraction) of m points at n times: (m, n)."""
    frame = AltAz(obstime=times.reshape(1, -1), location=_loc(site), pressure=0 * u.hPa)
    c = SkyCoord(ra=ra.reshape(-1, 1) * u.deg, dec=dec.reshape(-1, 1) * u.deg, frame="icrs")
    return c.transform_to(frame).alt.deg


def _ref_sun_alt(site: Site, times: Time) -> np.ndarray:
    return get_sun(times).transform_to(AltAz(obstime=times, location=_loc(site), pressure=0 * u.hPa)).alt.deg


def _random_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def _mids(res) -> Time:
    return res.slice_start + 0.5 * (res.slice_end - res.slice_start)


# ------------------------------------------------------------------------ instant


@pytest.mark.parametrize("order", [7, 8])
@pytest.mark.parametrize("name,when", NIGHTS)
def test_observable_moc_matches_altaz(name: str, when: str, order: int) -> None:
    site = KNOWN_SITES[name]
    t = Time(when, scale="utc")
    assert _ref_sun_alt(site, t.reshape(1))[0] < site.max_sun_alt_deg - 1  # a dark instant
    ranges = observable_moc_at(site, t, order)
    assert kr.is_canonical(ranges)
    ra, dec = _random_points(3000, seed=order)
    pix29 = khp.lonlat_to_nest(29, np.radians(ra), np.radians(dec))
    inside = kr.contains(ranges, pix29)
    alt = _ref_alt(ra, dec, site, t.reshape(1))[:, 0]
    expected = alt >= site.min_alt_deg
    near = np.abs(alt - site.min_alt_deg) < math.degrees(kgeo.max_pixrad(order)) + MODEL_DEG
    assert expected.sum() > 300 and (~expected).sum() > 300
    assert np.all(inside[~near] == expected[~near])
    assert (inside != expected).sum() <= near.sum()


def test_observable_moc_is_empty_in_daylight() -> None:
    site = KNOWN_SITES["palomar"]
    t = Time("2026-01-15T20:00:00", scale="utc")  # local noon
    assert _ref_sun_alt(site, t.reshape(1))[0] > 0
    assert observable_moc_at(site, t, 8).shape == (0, 2)


def test_moon_exclusion_matches_altaz() -> None:
    # 2025-09-07 was full Moon: at La Palma it was up and bright all night.
    site = dataclasses.replace(KNOWN_SITES["lapalma"], min_moon_sep_deg=40.0)
    t = Time("2025-09-08T00:30:00", scale="utc")
    loc = _loc(site)
    frame = AltAz(obstime=t, location=loc, pressure=0 * u.hPa)
    moon = get_body("moon", t, location=loc).transform_to(frame)
    assert moon.alt.deg > site.min_alt_deg
    order = 8
    ranges = observable_moc_at(site, t, order)
    no_moon = observable_moc_at(dataclasses.replace(site, min_moon_sep_deg=None), t, order)
    assert kr.count_pixels(ranges) < kr.count_pixels(no_moon)
    assert np.array_equal(kr.difference(ranges, no_moon), np.empty((0, 2), dtype=np.int64))
    ra, dec = _random_points(4000, seed=7)
    pts = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").transform_to(frame)
    sep = pts.separation(moon).deg
    alt = pts.alt.deg
    expected = (alt >= site.min_alt_deg) & (sep > site.min_moon_sep_deg)
    pad = math.degrees(kgeo.max_pixrad(order)) + MODEL_DEG
    near = (np.abs(alt - site.min_alt_deg) < pad) | (np.abs(sep - site.min_moon_sep_deg) < pad)
    inside = kr.contains(ranges, khp.lonlat_to_nest(29, np.radians(ra), np.radians(dec)))
    assert ((alt >= site.min_alt_deg) & (sep <= site.min_moon_sep_deg - pad)).sum() > 50
    assert np.all(inside[~near] == expected[~near])


# ------------------------------------------------------------------ time slices


@pytest.fixture(scope="module")
def palomar_night(skymap):
    """Palomar over 24 h from local 16:00 (daylight, night, daylight), 30-min slices."""
    return observability(skymap, KNOWN_SITES["palomar"], "2026-01-15T00:00:00", hours=24, step_minutes=30)


def test_sun_altitude_matches_altaz(palomar_night) -> None:
    res = palomar_night
    ref = _ref_sun_alt(res.site, _mids(res))
    np.testing.assert_allclose(res.sun_alt_deg, ref, atol=0.1)
    assert np.abs(res.sun_alt_deg - ref).max() < MODEL_DEG  # solar parallax is 0.0024 deg


def test_slices_tile_the_window(palomar_night, skymap) -> None:
    res = palomar_night
    assert len(res) == 48
    assert np.allclose((res.slice_end - res.slice_start).sec, 1800.0)
    assert np.allclose((res.slice_start[1:] - res.slice_end[:-1]).sec, 0.0)
    short = observability(skymap, res.site, "2026-01-15T06:00:00", hours=1.0, step_minutes=25.0)
    assert len(short) == 3
    assert (short.slice_end[-1] - Time("2026-01-15T07:00:00")).sec == pytest.approx(0.0, abs=1e-6)
    assert (short.slice_end[-1] - short.slice_start[-1]).sec == pytest.approx(600.0, abs=1e-6)


def test_probabilities_equal_brute_force(palomar_night, skymap) -> None:
    res = palomar_night
    p = res.probability
    assert np.all((p >= 0) & (p <= 1 + 1e-12))
    assert np.all(p[~res.dark] == 0) and (~res.dark).sum() > 10
    assert p.max() > 0.9  # the map (RA 120, Dec 30) transits at night in January
    mids = _mids(res)
    for k in range(len(res)):
        r = observable_moc_at(res.site, mids[k], res.order)
        assert np.array_equal(r, res.ranges[k])
        assert p[k] == pytest.approx(probability_in_ranges(skymap, r), abs=1e-12)
    # The same numbers from bare cells.
    cells = observability((skymap.ranges, skymap.prob), res.site, res.slice_start[0], 24, 30)
    np.testing.assert_allclose(cells.probability, p, atol=1e-12)


def test_probability_against_altaz_zenith(palomar_night, skymap) -> None:
    # Independent of the kernels: cells at order 8 selected by numpy from the
    # zenith astropy gives (AltAz alt = 90 deg -> ICRS); the two may differ
    # only by cells whose centre is within MODEL_DEG of the boundary.
    import healpy as hp

    res = palomar_night
    order = res.order
    centres = np.array(hp.pix2vec(2**order, np.arange(12 * 4**order), nest=True)).T
    frame = AltAz(obstime=_mids(res), location=_loc(res.site), pressure=0 * u.hPa)
    zen = SkyCoord(alt=np.full(len(res), 90.0) * u.deg, az=np.zeros(len(res)) * u.deg, frame=frame).icrs
    zvec = zen.cartesian.xyz.value.T
    s = 2 * (29 - order)
    sin_lim = 1.0 / res.site.max_airmass
    band = math.sin(math.radians(MODEL_DEG))
    for k in np.flatnonzero(res.dark):
        d = centres @ zvec[k]
        ipix = np.flatnonzero(d >= sin_lim)
        ref = probability_in_ranges(skymap, kr.normalize(np.stack([ipix << s, (ipix + 1) << s], 1)))
        edge = np.flatnonzero(np.abs(d - sin_lim) < band)
        slack = probability_in_ranges(skymap, kr.normalize(np.stack([edge << s, (edge + 1) << s], 1)))
        assert abs(res.probability[k] - ref) <= slack + 1e-12


def test_total_and_best(palomar_night, skymap) -> None:
    res = palomar_night
    union = MOC.new_empty(29)
    for k in range(len(res)):
        union = union.union(res.moc(k))
    total = res.total_observable_probability()
    assert total == pytest.approx(probability_in_moc(skymap, union), abs=1e-12)
    assert total >= res.probability.max() - 1e-12
    c90 = credible_ranges(skymap, [0.9])[0]
    in90 = res.total_observable_probability(c90)
    assert in90 <= 0.9 + 1e-9 and in90 <= total + 1e-12
    assert in90 == pytest.approx(probability_in_moc(skymap, union.intersection(moc_from_ranges(c90))), abs=1e-12)
    assert res.total_observable_probability(moc_from_ranges(c90)) == pytest.approx(in90, abs=1e-15)
    assert res.best_slice() == int(np.argmax(res.probability))
    with pytest.raises(ObservabilityError):
        res.total_observable_probability(np.array([[5, 3]]))


def test_nothing_observable() -> None:
    # All the probability in one order-3 cell at Dec +89: never above the horizon at CTIO.
    ipix = int(khp.lonlat_to_nest(3, np.zeros(1), np.radians([89.0]))[0])
    cell = (np.array([[ipix << 52, (ipix + 1) << 52]]), np.array([1.0]))
    res = observability(cell, KNOWN_SITES["ctio"], "2025-06-20T23:00:00", hours=9, step_minutes=60)
    assert res.dark.all()
    assert res.best_slice() is None
    assert res.total_observable_probability() == 0.0


# ------------------------------------------------------------------ space-time MOC


def test_stmoc_spans_a_dark_window(skymap) -> None:
    # 03:00-11:00 UTC is 19:00-03:00 at Palomar: dark throughout.
    start = Time("2026-01-15T03:00:00", scale="utc")
    res = observability(skymap, KNOWN_SITES["palomar"], start, hours=8, step_minutes=20)
    assert res.dark.all()
    stm = res.stmoc()
    # mocpy 0.21 converts times with an error of up to ~1.3 ms (TCB day
    # fractions); the slices are minutes long.
    assert abs((stm.min_time - start).sec) < 2e-3
    assert abs((stm.max_time - (start + 8 * u.hour)).sec) < 2e-3
    mids = _mids(res)
    for k in range(len(res)):
        around = TimeMOC.from_time_ranges(
            mids[k].reshape(1), (mids[k] + 1 * u.s).reshape(1), delta_t=TimeDelta(1e-3, format="sec")
        )
        q = stm.query_by_time(around)
        assert np.array_equal(ranges_of(q), res.ranges[k])


def test_stmoc_covers_only_dark_slices(palomar_night) -> None:
    res = palomar_night
    stm = res.stmoc(time_order=55)
    first = int(np.flatnonzero(res.dark)[0])
    last = int(np.flatnonzero(res.dark)[-1])
    assert abs((stm.min_time - res.slice_start[first]).sec) < 0.1
    assert abs((stm.max_time - res.slice_end[last]).sec) < 0.1
    day = observability(
        (np.array([[0, kr.NPIX29]]), np.array([1.0])), res.site, "2026-01-15T18:00:00", hours=3, step_minutes=60
    )
    assert day.stmoc().is_empty()


# ------------------------------------------------------------------- target windows


def test_target_windows_match_altaz() -> None:
    site = KNOWN_SITES["ctio"]
    start = Time("2025-06-20T18:00:00", scale="utc")
    ra, dec = _random_points(150, seed=11)
    ra, dec = np.append(ra, [0.0]), np.append(dec, [80.0])  # the last never rises
    windows = target_windows(ra, dec, site, start, hours=18, step_minutes=30)
    edges, mask = target_observable(ra, dec, site, start, hours=18, step_minutes=30)
    n = mask.shape[1]
    mids = edges[:-1] + 0.5 * (edges[1:] - edges[:-1])
    alt = _ref_alt(ra, dec, site, mids)
    sun = _ref_sun_alt(site, mids)
    expected = (alt >= site.min_alt_deg) & (sun <= site.max_sun_alt_deg)[None, :]
    near = (np.abs(alt - site.min_alt_deg) < MODEL_DEG) | (np.abs(sun - site.max_sun_alt_deg) < MODEL_DEG)[None, :]
    assert np.all(mask[~near] == expected[~near])
    assert expected.any(axis=1).sum() > 50
    assert windows[-1] == []
    for i, wins in enumerate(windows):
        covered = np.zeros(n, dtype=bool)
        prev_end = None
        for a, b in wins:
            ia = int(np.argmin(np.abs((edges - a).sec)))
            ib = int(np.argmin(np.abs((edges - b).sec)))
            assert (edges[ia] - a).sec == 0 and (edges[ib] - b).sec == 0 and ia < ib
            assert prev_end is None or ia > prev_end  # merged: no touching windows
            covered[ia:ib] = True
            prev_end = ib
        assert np.array_equal(covered, mask[i])


def test_target_windows_scalar_and_moon() -> None:
    site = KNOWN_SITES["lapalma"]
    w = target_windows(300.0, 20.0, site, "2025-09-07T20:00:00", hours=10, step_minutes=15)
    assert len(w) == 1 and len(w[0]) == 1
    moon_site = dataclasses.replace(site, min_moon_sep_deg=60.0)
    # Full Moon near RA 345, Dec -7: a target 30 deg away is excluded.
    _, m0 = target_observable([345.0 + 30.0], [-7.0], site, "2025-09-07T20:00:00", 10, 15)
    _, m1 = target_observable([345.0 + 30.0], [-7.0], moon_site, "2025-09-07T20:00:00", 10, 15)
    assert m0.any() and not m1.any()


# ------------------------------------------------------------------------ errors


def test_sites() -> None:
    for name, site in KNOWN_SITES.items():
        site.validate()
        assert site.name == name
    s = Site.from_dict("x", {"lat_deg": -30.0, "lon_deg": 289.0, "height_m": 10, "max_airmass": 1.5,
                             "max_sun_alt_deg": -18, "min_moon_sep_deg": 20})
    assert s.min_alt_deg == pytest.approx(41.8103149, abs=1e-6)
    assert s.min_moon_sep_deg == 20


@pytest.mark.parametrize(
    "table,fragment",
    [
        ({"lat_deg": 91, "lon_deg": 0, "height_m": 0}, "lat_deg"),
        ({"lat_deg": 0, "lon_deg": "west", "height_m": 0}, "lon_deg"),
        ({"lat_deg": 0, "lon_deg": 0, "height_m": float("nan")}, "height_m"),
        ({"lat_deg": 0, "lon_deg": 0, "height_m": 0, "max_airmass": 1.0}, "max_airmass"),
        ({"lat_deg": 0, "lon_deg": 0, "height_m": 0, "max_sun_alt_deg": True}, "max_sun_alt_deg"),
        ({"lat_deg": 0, "lon_deg": 0, "height_m": 0, "min_moon_sep_deg": -1}, "min_moon_sep_deg"),
        ({"lat_deg": 0, "lon_deg": 0}, "missing height_m"),
        ({"lat_deg": 0, "lon_deg": 0, "height_m": 0, "airmass": 2}, "unknown key(s) airmass"),
    ],
)
def test_bad_sites(table: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Site.from_dict("bad", table)


def test_bad_arguments(skymap) -> None:
    site = KNOWN_SITES["palomar"]
    for kwargs in ({"hours": 0}, {"hours": -1}, {"step_minutes": 0}, {"step_minutes": float("inf")},
                   {"order": 17}, {"order": -1}, {"order": 7.5}, {"hours": 1e6, "step_minutes": 0.1}):
        with pytest.raises(ObservabilityError) as info:
            observability(skymap, site, "2026-01-15", **kwargs)
        assert isinstance(info.value, ValueError) and isinstance(info.value, GwfollowError)
    with pytest.raises(ObservabilityError, match="start"):
        observability(skymap, site, "not a time")
    with pytest.raises(ObservabilityError, match="one instant"):
        observable_moc_at(site, Time(["2026-01-15", "2026-01-16"]))
    with pytest.raises(ObservabilityError, match="target 1"):
        target_windows([0.0, 10.0], [0.0, 95.0], site, "2026-01-15")
    with pytest.raises(ObservabilityError):
        observability((np.zeros((3, 2)), np.zeros(2)), site, "2026-01-15")
    with pytest.raises(ConfigError, match="sites.palomar.max_airmass"):
        observable_moc_at(dataclasses.replace(site, max_airmass=0.5), "2026-01-15")


def test_no_iers_download_or_global_state(monkeypatch: pytest.MonkeyPatch, skymap) -> None:
    """gwfollow reads the bundled IERS-A table itself: IERS_Auto is never opened."""

    def refuse(*args, **kwargs):  # pragma: no cover - would mean a lookup through IERS_Auto
        raise AssertionError("IERS_Auto opened")

    monkeypatch.setattr(iers.IERS_Auto, "open", classmethod(refuse))
    monkeypatch.setattr(iers.earth_orientation_table, "_value", None, raising=False)
    before = {k: getattr(iers.conf, k) for k in ("auto_download", "auto_max_age", "iers_degraded_accuracy")}
    site = KNOWN_SITES["siding_spring"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ERFA's "dubious year" past the leap-second table
        for when in ("2026-03-10T10:00:00", "2031-05-01T12:00:00"):
            assert observable_moc_at(site, when, 6).shape[0] > 0
            observability(skymap, site, when, hours=2, step_minutes=60, order=6)
            target_windows([10.0], [-40.0], site, when, hours=2, step_minutes=60)
    assert before == {k: getattr(iers.conf, k) for k in before}


def test_ut1_utc_read_directly_equals_astropys_iers_a() -> None:
    """The fixed-width reader of the bundled finals2000A table gives astropy's IERS_A
    values (same rows, same interpolation, leap seconds included), 0 outside the table."""
    from gwfollow.targets.observability import ut1_minus_utc_s, bundled_ut1_utc

    mjd, _ = bundled_ut1_utc()
    table = iers.IERS_A.open(iers.IERS_A_FILE)
    assert mjd.shape[0] == len(table)
    t = Time(np.linspace(mjd[0] - 30, mjd[-1] + 30, 100_001), format="mjd", scale="utc")
    ref, status = table.ut1_utc(t, return_status=True)
    ref = np.where(np.asarray(status) < 0, 0.0, ref.to_value(u.s))
    np.testing.assert_allclose(ut1_minus_utc_s(t), ref, rtol=0, atol=1e-9)
    # Across the leap second of 2016-12-31 UT1-UTC jumps by +1 s and stays continuous otherwise.
    leap = Time(["2016-12-31T12:00:00", "2017-01-01T12:00:00"], scale="utc")
    assert np.diff(ut1_minus_utc_s(leap))[0] == pytest.approx(1.0, abs=0.01)
