"""Credible-region MOCs against mocpy (split) and ligo.skymap (exclude)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from gwfollow.kernels import ranges as kr
from hypothesis import given, settings
from hypothesis import strategies as st
from ligo.skymap.postprocess import find_greedy_credible_levels
from mocpy import MOC

from gwfollow import (
    credible_moc,
    credible_mocs,
    moc_area,
    probability_in_moc,
    read_skymap,
)
from gwfollow.errors import MocError
from gwfollow.regions.moc import credible_ranges, ranges_area_deg2, ranges_of

from .conftest import shared_files
from .strategies import multiorder_fits_bytes, random_skymap_arrays

LEVELS = (0.1, 0.5, 0.9, 0.99)
MULTIORDER = [p for p in shared_files("skymaps", "*.multiorder.fits")]
ALL_MAPS = shared_files("skymaps")
SR_TO_DEG2 = (180 / np.pi) ** 2


def _ids(paths):
    return [p.name for p in paths]


def _greedy_exclude_ranges(sm, level):
    prob = sm.cell_probabilities()
    cls = find_greedy_credible_levels(prob, sm.probdensity)
    sel = cls <= level
    from gwfollow.kernels.healpix import uniq_to_ranges

    return kr.normalize(uniq_to_ranges(sm.uniq[sel])), float((prob[sel] / sm.probdensity[sel]).sum() if sel.any() else 0.0)


@pytest.mark.skipif(not MULTIORDER, reason="../shared/data/skymaps absent")
@pytest.mark.parametrize("path", MULTIORDER, ids=_ids(MULTIORDER))
def test_split_equals_mocpy_on_real_maps(path) -> None:
    sm = read_skymap(path)
    mine = credible_mocs(sm, LEVELS)
    for level, m in zip(LEVELS, mine):
        ref = MOC.from_multiordermap_fits_file(str(path), cumul_to=level)
        assert np.array_equal(ranges_of(m), ranges_of(ref)), level
        assert m.max_order == ref.max_order


@pytest.mark.skipif(not ALL_MAPS, reason="../shared/data/skymaps absent")
@pytest.mark.parametrize("path", ALL_MAPS, ids=_ids(ALL_MAPS))
def test_exclude_equals_ligo_skymap_greedy_region(path) -> None:
    sm = read_skymap(path)
    for level in (0.5, 0.9):
        (mine,) = credible_ranges(sm, [level], "exclude")
        ref, ref_area_sr = _greedy_exclude_ranges(sm, level)
        assert np.array_equal(mine, ref)
        assert ranges_area_deg2(mine) == pytest.approx(ref_area_sr * SR_TO_DEG2, rel=1e-9)


@pytest.mark.skipif(not ALL_MAPS, reason="../shared/data/skymaps absent")
@pytest.mark.parametrize("path", [p for p in ALL_MAPS if p.name.endswith(".fits.gz")], ids=_ids([p for p in ALL_MAPS if p.name.endswith(".fits.gz")]))
def test_flat_map_90_area_matches_ligo_skymap_on_the_flat_pixels(path) -> None:
    """The 90% area of a flat map agrees with ligo.skymap on the flat pixels.

    Within a run of equal-density pixels the greedy order is arbitrary, so
    the areas may differ by at most the largest tie block at the boundary;
    maps without ties agree to 1e-9.
    """
    import healpy as hp
    from ligo.skymap.io import read_sky_map

    sm = read_skymap(path)
    prob, _ = read_sky_map(str(path), nest=True, distances=False)
    cls = find_greedy_credible_levels(prob)
    ref = (cls <= 0.9).sum() * hp.nside2pixarea(hp.npix2nside(prob.size), degrees=True)
    (mine,) = credible_ranges(sm, [0.9], "exclude")
    got = ranges_area_deg2(mine)
    tie = np.unique(prob, return_counts=True)[1].max() * hp.nside2pixarea(hp.npix2nside(prob.size), degrees=True)
    assert abs(got - ref) <= max(1e-9 * ref, tie)


def test_include_encloses_level_and_split_in_between(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    for level in LEVELS:
        ex, sp, inc = (credible_ranges(sm, [level], b)[0] for b in ("exclude", "split", "include"))
        from gwfollow.regions.moc import probability_in_ranges

        pe, ps, pi = (probability_in_ranges(sm, r) for r in (ex, sp, inc))
        assert pe <= ps + 1e-15 <= pi + 2e-15
        assert pe <= level + 1e-12 and ps <= level + 1e-12 and pi >= level - 1e-12
        assert np.array_equal(kr.intersection(ex, sp), ex) and np.array_equal(kr.intersection(sp, inc), sp)


@given(st.integers(0, 10_000), st.sampled_from([0.05, 0.3, 0.5, 0.9, 0.95, 1.0]), st.booleans(),
       st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_generated_maps_split_equals_mocpy(tmp_path_factory, seed, level, ties, extra_order) -> None:
    uniq, dens = random_skymap_arrays(seed, max_order=7, n_splits=200, ties=ties)
    order = np.floor(np.log2(uniq // 4) / 2).astype(int)
    mocorder = int(order.max()) + extra_order
    data = multiorder_fits_bytes(uniq, dens, mocorder=mocorder)
    p = tmp_path_factory.mktemp("gen") / "gen.fits"
    p.write_bytes(data)
    sm = read_skymap(data)
    assert sm.meta.moc_order == mocorder
    ref = MOC.from_multiordermap_fits_file(str(p), cumul_to=level)
    assert np.array_equal(ranges_of(credible_moc(sm, level)), ranges_of(ref))
    # 32-bit UNIQ (TFORM J), which mocpy 0.21 cannot read, gives the same region.
    sm32 = read_skymap(multiorder_fits_bytes(uniq, dens, mocorder=mocorder, uniq_format="J"))
    assert np.array_equal(ranges_of(credible_moc(sm32, level)), ranges_of(ref))


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_generated_maps_exclude_equals_greedy(seed) -> None:
    uniq, dens = random_skymap_arrays(seed, ties=False)
    sm = read_skymap(multiorder_fits_bytes(uniq, dens))
    for level in (0.5, 0.9):
        (mine,) = credible_ranges(sm, [level], "exclude")
        ref, _ = _greedy_exclude_ranges(sm, level)
        assert np.array_equal(mine, ref)


def _mocpy_prob(sm, moc) -> float:
    t = Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})
    return float(MOC.probabilities_in_multiordermap([moc], t)[0])


@pytest.mark.skipif(not MULTIORDER, reason="../shared/data/skymaps absent")
@pytest.mark.parametrize("path", MULTIORDER, ids=_ids(MULTIORDER))
def test_probability_in_moc_matches_mocpy(path) -> None:
    from astropy import units as u

    sm = read_skymap(path)
    m90 = credible_moc(sm, 0.9)
    # A MOC that cuts cells: a cone around the region's barycentre at order 13.
    centre = m90.barycenter()
    cone = MOC.from_cone(lon=centre.ra, lat=centre.dec, radius=2 * u.deg, max_depth=13)
    for moc in (m90, cone, cone.complement()):
        assert probability_in_moc(sm, moc) == pytest.approx(_mocpy_prob(sm, moc), rel=1e-10, abs=1e-15)


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_generated_probability_in_moc_matches_mocpy(seed) -> None:
    from astropy import units as u

    uniq, dens = random_skymap_arrays(seed, ties=False)
    sm = read_skymap(multiorder_fits_bytes(uniq, dens))
    rng = np.random.default_rng(seed)
    cone = MOC.from_cone(lon=rng.uniform(0, 360) * u.deg, lat=rng.uniform(-80, 80) * u.deg,
                         radius=rng.uniform(1, 40) * u.deg, max_depth=int(rng.integers(3, 14)))
    assert probability_in_moc(sm, cone) == pytest.approx(_mocpy_prob(sm, cone), rel=1e-10, abs=1e-15)


def test_area_matches_mocpy(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    m = credible_moc(sm, 0.9)
    assert moc_area(m) == pytest.approx(m.sky_fraction * 4 * np.pi * SR_TO_DEG2, rel=1e-12)


def test_bad_levels_and_boundary(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    for bad in (0.0, -0.1, 1.5, float("nan"), "x"):
        with pytest.raises(MocError):
            credible_moc(sm, bad)
    with pytest.raises(MocError, match="boundary"):
        credible_moc(sm, 0.9, boundary="middle")


def test_several_levels_share_one_sort_and_equal_single_calls(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    many = credible_mocs(sm, LEVELS)
    for level, m in zip(LEVELS, many):
        assert m == credible_moc(sm, level)
    areas = [moc_area(m) for m in many]
    assert areas == sorted(areas)


def test_event_stmoc(sim_bytes) -> None:
    from astropy import units as u
    from astropy.time import Time

    sm = read_skymap(sim_bytes)
    from gwfollow import event_stmoc

    st_moc = event_stmoc(sm, 0.9, duration=3600.0)
    t0 = Time(sm.meta.event_mjd, format="mjd", scale="utc")
    space = credible_moc(sm, 0.9)
    from mocpy import TimeMOC

    during = TimeMOC.from_time_ranges((t0 + 600 * u.s).reshape(1), (t0 + 1200 * u.s).reshape(1))
    inside = st_moc.query_by_time(during)
    assert np.array_equal(ranges_of(inside), ranges_of(space))
    assert abs((st_moc.min_time - t0).sec) < 1e-3
    assert abs((st_moc.max_time - (t0 + 3600 * u.s)).sec) < 1e-3
    with pytest.raises(MocError):
        event_stmoc(sm, 0.9, duration=-1)
