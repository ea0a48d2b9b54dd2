"""Observation plans: observability checked with astropy's AltAz, no overlaps,
probability equal to the mocpy union of the footprints, true footprint sizes,
EDF against a bipartite-matching reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gwfollow.kernels.schedule import edf_assign, longest_run

from gwfollow.errors import ConfigError, PlanError
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.targets.fields import (
    ZTF_FOV,
    FieldOfView,
    Telescope,
    field_footprint_ranges,
    grid_path,
    read_field_grid,
)
from gwfollow.targets.plan import PlanParameters, plan_joint, plan_observations
from gwfollow.targets.sites import site_by_name

from .conftest import shared_path


@pytest.fixture(scope="module")
def ztf() -> Telescope:
    return Telescope.from_file("ZTF", grid_path("package:ZTF_Fields.txt"), ZTF_FOV)


@pytest.fixture(scope="module")
def palomar():
    return site_by_name("Palomar")


def _astropy_check(plan, site) -> None:
    """Every exposure observable at its start and end, by astropy's AltAz alone."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time
    from astropy.utils import iers

    loc = EarthLocation.from_geodetic(site.lon_deg * u.deg, site.lat_deg * u.deg, site.height_m * u.m)
    min_alt = math.degrees(math.asin(1.0 / site.max_airmass))
    with iers.conf.set_temp("auto_download", False):
        for times in (plan.start_utc, plan.end_utc):
            t = Time(times.utc.isot, scale="utc")
            frame = AltAz(obstime=t, location=loc)
            alt = SkyCoord(plan.ra * u.deg, plan.dec * u.deg).transform_to(frame).alt.deg
            sun = get_body("sun", t, loc).transform_to(frame).alt.deg
            assert np.all(alt >= min_alt), (alt.min(), plan.field_id[np.argmin(alt)])
            assert np.all(sun <= site.max_sun_alt_deg), sun.max()


def _check_times(plan, p: PlanParameters) -> None:
    s = plan.start_utc.unix
    e = plan.end_utc.unix
    assert np.all(np.diff(s) > 0), "exposures are time-ordered"
    assert np.all(s[1:] >= e[:-1] + p.readout_s - 1e-6), "no overlap, read-out between exposures"
    np.testing.assert_allclose(e - s, p.exposure_s, atol=1e-3)
    t0 = plan.start.unix
    assert s.min() >= t0 - 1e-6 and e.max() <= t0 + p.hours * 3600 + 1e-6
    if p.visits > 1:
        for f in np.unique(plan.field_id):
            fs = np.sort(s[plan.field_id == f])
            assert fs.shape[0] == p.visits
            assert np.all(np.diff(fs) >= p.visit_gap_s - 1e-6)


def _mocpy_union_probability(plan, fov: FieldOfView, path) -> float:
    """The map's probability in the union of the planned footprints, all by mocpy."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from mocpy import MOC

    ids, first = np.unique(plan.field_id, return_index=True)
    ra, dec = plan.ra[first], plan.dec[first]
    half = fov.width_deg / 2  # mocpy's a and b are half-widths
    mocs = MOC.from_boxes(lon=Longitude(ra * u.deg), lat=Latitude(dec * u.deg), a=Angle(np.full(ids.size, half) * u.deg),
                          b=Angle(np.full(ids.size, half) * u.deg), angle=Angle(np.zeros(ids.size) * u.deg),
                          max_depth=10)
    union = mocs[0]
    for m in mocs[1:]:
        union = union.union(m)
    return float(union.probability_in_multiordermap(str(path)))


def test_ztf_footprint_has_the_true_size(ztf: Telescope) -> None:
    """6.86 deg on a side (47 deg2), not the 13.7 deg square of a full width passed as a half-width."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from mocpy import MOC

    from gwfollow.regions.moc import ranges_area_deg2

    k = int(np.flatnonzero(ztf.ids == 700)[0])
    foot = field_footprint_ranges(ztf.ra[k], ztf.dec[k], ztf.fov, order=10)
    area = ranges_area_deg2(foot)
    assert 46.5 < area < 49.0, area  # 6.86^2 = 47.06 plus the border cells at order 10
    trap = MOC.from_box(Longitude(ztf.ra[k] * u.deg), Latitude(ztf.dec[k] * u.deg), a=Angle(6.86 * u.deg),
                        b=Angle(6.86 * u.deg), angle=Angle(0 * u.deg), max_depth=10)
    assert trap.sky_fraction * 41252.96 > 3.8 * area  # the trap is four times too large
    # The footprint's farthest cell centre is at the half-diagonal (4.85 deg), not 9.7 deg.
    from gwfollow.kernels import ranges as kr
    from gwfollow.kernels.geometry import nest_to_lonlat

    deg10 = kr.degrade(foot, 10) >> (2 * 19)
    pix = np.concatenate([np.arange(a, b) for a, b in deg10])
    lon, lat = nest_to_lonlat(10, pix)
    c = np.radians([ztf.ra[k], ztf.dec[k]])
    cosd = np.sin(lat) * np.sin(c[1]) + np.cos(lat) * np.cos(c[1]) * np.cos(lon - c[0])
    far = math.degrees(math.acos(cosd.min()))
    assert 4.7 < far < 5.0, far


@pytest.mark.shared_data
def test_packaged_grid_is_the_real_ztf_grid(ztf: Telescope) -> None:
    # The grid that comes with gwfollow (from the ztffields package) is ZTF's own
    # ZTF_Fields.txt, field for field, without the two polar fields 1896 and 1897.
    real = read_field_grid(shared_path("fields", "ZTF_Fields.txt"))
    mine = dict(zip(ztf.ids.tolist(), zip(ztf.ra.tolist(), ztf.dec.tolist())))
    assert set(real) - set(mine) == {1896, 1897} and set(mine) <= set(real)
    assert all(mine[k] == real[k] for k in mine)
    assert ztf.dec.min() == pytest.approx(-89.05)
    with pytest.raises(Exception, match="packaged grids"):
        grid_path("package:GOTO-4.tess")


def test_sites_by_name(palomar) -> None:
    from gwfollow.config import SiteConfig, named_config

    assert palomar.lat_deg == pytest.approx(33.3563)
    assert site_by_name("siding spring").lat_deg < -30
    mine = named_config(SiteConfig, "Mine", lat_deg=10.0, lon_deg=20.0, height_m=100.0, max_airmass=1.5,
                        min_moon_sep_deg=30.0)
    s = site_by_name("mine", [mine])
    assert (s.lat_deg, s.max_airmass, s.min_moon_sep_deg) == (10.0, 1.5, 30.0)
    with pytest.raises(ConfigError, match="unknown site 'Atlantis'.*add \\[sites.NAME\\]"):
        site_by_name("Atlantis")


@pytest.mark.shared_data
@pytest.mark.parametrize("strategy", ["coverage", "greedy"])
@pytest.mark.parametrize("visits", [1, 2])
def test_plan_is_executable(ztf: Telescope, palomar, strategy: str, visits: int) -> None:
    path = shared_path("skymaps", "S190814bv_bayestar.multiorder.fits")
    sm = read_skymap(path)
    p = PlanParameters.defaults(strategy=strategy, visits=visits, filters=("g", "r"))
    plan = plan_observations(sm, ztf, palomar, sm.event_t0, p)
    assert len(plan) >= visits
    _check_times(plan, p)
    _astropy_check(plan, palomar)
    if visits == 2:
        first = plan.visit == 1
        assert set(plan.filter[first]) == {"g"} and set(plan.filter[~first]) == {"r"}
    assert plan.probability == pytest.approx(_mocpy_union_probability(plan, ztf.fov, path), abs=1e-9)
    assert np.all(np.diff(plan.cumprob) >= 0) and plan.prob[plan.visit > 1].sum() == 0
    assert plan.probability > 0.8  # gwemopt 0.4.2 covers 0.814 of this map here (issue 12)
    t = plan.table()
    assert t.colnames[:10] == ["field_id", "ra", "dec", "start_utc", "end_utc", "filter", "visit", "airmass",
                               "prob", "cumprob"]
    assert t["start_utc"][0].endswith("Z") and np.all(t["airmass"] <= palomar.max_airmass)


def test_plan_on_a_generated_map_and_replanning(sim_bytes: bytes, ztf: Telescope) -> None:
    sm = read_skymap(sim_bytes)  # RA 120, Dec 30: well placed for Palomar at the start below
    site = site_by_name("Palomar")
    start = "2026-01-15T02:00:00"
    p = PlanParameters.defaults(hours=12)
    plan = plan_observations(sm, ztf, site, start, p)
    assert len(plan) > 0 and plan.probability > 0.5
    _check_times(plan, p)
    _astropy_check(plan, site)
    # Executed pointings: what the first plan covered is subtracted; the
    # re-plan only adds what is left.
    again = plan_observations(sm, ztf, site, start, p, covered_before=plan.covered)
    assert again.probability < 1e-6 or not set(again.field_id) & set(plan.field_id)
    assert again.probability <= 1.0 - plan.probability + 1e-9


def test_joint_plan_does_not_repeat(sim_bytes: bytes, ztf: Telescope) -> None:
    from gwfollow.regions.moc import probability_in_ranges

    sm = read_skymap(sim_bytes)
    wide = Telescope.generated("WIDE", FieldOfView.square(3.0))
    pairs = [(ztf, site_by_name("Palomar")), (wide, site_by_name("lapalma"))]
    p = PlanParameters.defaults(hours=12)
    plans = plan_joint(sm, pairs, "2026-01-15T02:00:00", p)
    total = sum(pl.probability for pl in plans)
    assert total == pytest.approx(probability_in_ranges(sm, plans[-1].covered), abs=1e-9)
    assert plans[1].probability <= 1.0 - plans[0].probability + 1e-9
    # Each exposure of the second telescope adds probability the first did not cover.
    assert np.all(plans[1].prob[plans[1].visit == 1] > 0)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(PlanError, match="exposure_s"):
        PlanParameters.defaults(exposure_s=-1)
    with pytest.raises(PlanError, match="strategy 'best'"):
        PlanParameters.defaults(strategy="best")
    with pytest.raises(PlanError, match="visits"):
        PlanParameters.defaults(visits=0)


def _feasible_by_matching(rel: np.ndarray, dl: np.ndarray) -> bool:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    n_slots = int(dl.max()) + 1
    rows, cols = [], []
    for j, (a, b) in enumerate(zip(rel, dl)):
        for s in range(a, b + 1):
            rows.append(j)
            cols.append(s)
    g = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(rel.shape[0], n_slots))
    return bool(np.all(maximum_bipartite_matching(g, perm_type="column") >= 0))


def test_edf_against_bipartite_matching() -> None:
    rng = np.random.default_rng(12)
    n_feasible = 0
    for _ in range(300):
        n = int(rng.integers(1, 14))
        rel = rng.integers(0, 12, n).astype(np.int64)
        dl = (rel + rng.integers(0, 5, n)).astype(np.int64)
        got = edf_assign(rel, dl)
        ok = _feasible_by_matching(rel, dl)
        assert (got[0] >= 0) == ok
        if ok:
            n_feasible += 1
            assert np.unique(got).shape[0] == n
            assert np.all((got >= rel) & (got <= dl))
        else:
            assert np.all(got == -1)
    assert 30 < n_feasible < 290  # both outcomes exercised


def test_longest_run_against_python() -> None:
    rng = np.random.default_rng(5)
    mask = rng.random((50, 40)) < 0.6
    mask[0] = False
    got = longest_run(mask)
    for i, row in enumerate(mask):
        best, best_a, a = 0, -1, None
        for j, v in enumerate(list(row) + [False]):
            if v and a is None:
                a = j
            elif not v and a is not None:
                if j - a > best:
                    best, best_a = j - a, a
                a = None
        assert tuple(got[i]) == ((best_a, best_a + best - 1) if best else (-1, -2))


def test_nothing_observable_gives_an_empty_plan(sim_bytes: bytes, ztf: Telescope) -> None:
    """Daylight at Palomar for the whole window: no exposure, probability 0, an empty table."""
    sm = read_skymap(sim_bytes)
    plan = plan_observations(sm, ztf, site_by_name("Palomar"), "2026-01-15T19:00:00",
                             PlanParameters.defaults(hours=2))
    assert len(plan) == 0 and plan.probability == 0.0 and len(plan.table()) == 0
    plan = plan_observations(sm, ztf, site_by_name("Palomar"), "2026-01-15T19:00:00",
                             PlanParameters.defaults(hours=2, strategy="greedy"))
    assert len(plan) == 0


def test_plan_command_writes_every_format(sim_path, tmp_path, capsys) -> None:
    """``gwfollow plan`` in-process: CSV / JSON / VOTable, one row per exposure, time-ordered; errors on one line."""
    from astropy.io import votable
    from astropy.table import Table

    from gwfollow.cli.main import main

    base = ["plan", str(sim_path), "--telescope", "ZTF", "--site", "Palomar", "--start", "2026-01-15T02:00:00",
            "--hours", "12", "--visits", "2", "--visit-gap-min", "40", "--filters", "g,r"]
    assert main([*base, "-o", str(tmp_path / "plan.csv")]) == 0
    assert "exposure(s) cover" in capsys.readouterr().out
    t = Table.read(tmp_path / "plan.csv", format="ascii.csv")
    assert {"field_id", "ra", "dec", "start_utc", "end_utc", "filter", "airmass", "prob", "cumprob"} <= set(t.colnames)
    assert list(t["start_utc"]) == sorted(t["start_utc"]) and set(t["filter"]) == {"g", "r"}
    assert main([*base, "-o", str(tmp_path / "plan.json")]) == 0
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert len(doc["rows"]) == len(t)
    assert main([*base, "-o", str(tmp_path / "plan.xml")]) == 0
    assert len(votable.parse_single_table(str(tmp_path / "plan.xml")).to_table()) == len(t)
    capsys.readouterr()
    assert main(["plan", str(sim_path), "--site", "Atlantis"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown site 'Atlantis'" in err
    assert main(["plan", str(sim_path), "--start", "yesterday"]) == 2
    assert "cannot read --start" in capsys.readouterr().err


@pytest.mark.parametrize("name,when", [("Palomar", "2025-07-20T02:15:08.461"), ("ctio", "2026-01-03T20:00"),
                                       ("siding_spring", "2024-03-01T07:00")])
def test_interpolated_sky_equals_the_exact_one(name: str, when: str) -> None:
    """The plan's sky, computed every 30 min and turned with the Earth in between,
    against the exact zenith, Sun altitude and Moon at 2,000 random instants of a day."""
    import dataclasses

    from astropy.time import Time, TimeDelta

    from gwfollow.targets.observability import sky_vectors
    from gwfollow.targets.plan import _SkyGrid

    site = dataclasses.replace(site_by_name(name), min_moon_sep_deg=30.0)
    t0 = Time(when, scale="utc")
    sec = np.sort(np.random.default_rng(0).uniform(0, 86400, 2000))
    zen, sun, moon = _SkyGrid(site, t0, 0.0, 86400.0).at(sec)
    zen_x, sun_x, moon_x = sky_vectors(site, t0 + TimeDelta(sec, format="sec"))

    def arcsec(a, b):
        return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=1), np.einsum("ij,ij->i", a, b))) * 3600

    assert arcsec(zen, zen_x).max() < 0.1
    assert np.abs(sun - sun_x).max() < 1e-3
    assert arcsec(moon, moon_x).max() < 10.0
