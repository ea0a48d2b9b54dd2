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
from gwfollow.kernels.credible import PI_OVER_3
from gwfollow.regions.moc import credible_ranges, probability_in_ranges, ranges_area_deg2, ranges_of

from .conftest import shared_files, shared_path
from .strategies import multiorder_fits_bytes, random_skymap_arrays

LEVELS = (0.1, 0.5, 0.9, 0.99)
MULTIORDER = [p for p in shared_files("skymaps", "*.multiorder.fits")]
ALL_MAPS = shared_files("skymaps")
FLAT_MAPS = shared_files("skymaps", "*.fits.gz")
SR_TO_DEG2 = (180 / np.pi) ** 2


def _ids(paths):
    return [p.name for p in paths]


def _greedy_exclude_ranges(sm, level):
    prob = sm.cell_probabilities()
    cls = find_greedy_credible_levels(prob, sm.probdensity)
    sel = cls <= level
    from gwfollow.kernels.healpix import uniq_to_ranges

    return kr.normalize(uniq_to_ranges(sm.uniq[sel])), float((prob[sel] / sm.probdensity[sel]).sum() if sel.any() else 0.0)


@pytest.mark.parametrize("path", MULTIORDER, ids=_ids(MULTIORDER))
def test_split_equals_mocpy_on_real_maps(path) -> None:
    sm = read_skymap(path)
    mine = credible_mocs(sm, LEVELS)
    for level, m in zip(LEVELS, mine):
        ref = MOC.from_multiordermap_fits_file(str(path), cumul_to=level)
        assert np.array_equal(ranges_of(m), ranges_of(ref)), level
        assert m.max_order == ref.max_order


@pytest.mark.parametrize("path", ALL_MAPS, ids=_ids(ALL_MAPS))
def test_exclude_equals_ligo_skymap_greedy_region(path) -> None:
    sm = read_skymap(path)
    for level in (0.5, 0.9):
        (mine,) = credible_ranges(sm, [level], "exclude")
        ref, ref_area_sr = _greedy_exclude_ranges(sm, level)
        assert np.array_equal(mine, ref)
        assert ranges_area_deg2(mine) == pytest.approx(ref_area_sr * SR_TO_DEG2, rel=1e-9)


@pytest.mark.parametrize("path", FLAT_MAPS, ids=_ids(FLAT_MAPS))
def test_flat_map_90_area_matches_ligo_skymap_on_the_flat_pixels(path) -> None:
    """The 90% area of a flat map agrees with ligo.skymap on the flat pixels.

    Within a run of equal-density pixels the greedy order is arbitrary, so
    the areas may differ by at most the run of pixels whose density equals
    the boundary pixel's (the one crossing 90%); maps without a tie there
    agree to 1e-9.
    """
    import healpy as hp
    from ligo.skymap.io import read_sky_map

    sm = read_skymap(path)
    prob, _ = read_sky_map(str(path), nest=True, distances=False)
    # Summed in double precision, as gwfollow sums (cWB maps are float32: their
    # float32 running sum crosses 0.9 one pixel early).
    prob = prob.astype(np.float64)
    cls = find_greedy_credible_levels(prob)
    ref = (cls <= 0.9).sum() * hp.nside2pixarea(hp.npix2nside(prob.size), degrees=True)
    (mine,) = credible_ranges(sm, [0.9], "exclude")
    got = ranges_area_deg2(mine)
    inside = cls <= 0.9
    boundary = prob[~inside].max() if not inside.all() else prob.min()  # the pixel crossing 90%
    run = np.count_nonzero(prob == boundary)
    tie = (run - 1) * hp.nside2pixarea(hp.npix2nside(prob.size), degrees=True)
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


# ------------------------------------------------- levels hit exactly by a cumulative sum


def _greedy_reference(sm, level: float, boundary: str) -> np.ndarray:
    """The credible region of ligo.skymap's greedy levels, for any boundary.

    ``exclude``: cells with ``cls <= level``; ``include``: the same plus the
    next cell when they enclose less than ``level`` (none when the level is
    hit exactly).  Only valid on maps without ties above the boundary.
    """
    from gwfollow.kernels.healpix import uniq_to_ranges

    prob = sm.cell_probabilities()
    cls = find_greedy_credible_levels(prob, sm.probdensity)
    sel = cls <= level
    if boundary == "include" and (not sel.any() or cls[sel].max() < level) and not sel.all():
        nxt = np.flatnonzero(~sel)[np.argmin(cls[~sel])]
        sel[nxt] = True
    return kr.normalize(uniq_to_ranges(sm.uniq[sel]))


def _exact_cell_density(p: float, order: int) -> float | None:
    """A density whose cell probability ``(d * pi/3) * 4**-order`` is exactly ``p``, if one exists."""
    q = p * 4.0**order
    d = q / PI_OVER_3
    for _ in range(4):
        d = np.nextafter(d, -np.inf)
    for _ in range(9):
        if (d * PI_OVER_3) * 4.0**-order == p:
            return float(d)
        d = np.nextafter(d, np.inf)
    return None


def dyadic_skymap_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uniq, density) of a map whose cell probabilities are small multiples of ``2**-m``.

    Every prefix sum of the ranking is then an exact double, so levels can be
    chosen that the cumulative probability hits exactly; the probabilities
    sum to exactly 1, the densities are all distinct (no tie rule involved),
    the rows shuffled, the orders mixed.
    """
    from .strategies import random_multiorder_cells

    rng = np.random.default_rng(seed)
    for _attempt in range(1000):
        uniq = random_multiorder_cells(rng, max_order=3, n_splits=int(rng.integers(3, 12)))
        rng.shuffle(uniq)
        order = np.floor(np.log2(uniq // 4) / 2).astype(np.int64)
        weights = rng.choice(np.arange(1, 4000), size=uniq.size, replace=False)
        m = int(np.ceil(np.log2(weights[:-1].sum() + 1)))
        weights[-1] = 2**m - weights[:-1].sum()
        prob = np.ldexp(weights.astype(np.float64), -m)
        dens = [_exact_cell_density(float(p), int(o)) for p, o in zip(prob, order)]
        if None in dens:
            continue
        d = np.array(dens)
        if np.unique(d).size == uniq.size:
            return uniq, d
    raise AssertionError(f"no dyadic map found for seed {seed}")


@pytest.mark.parametrize("seed", range(6))
def test_levels_hit_exactly_by_the_cumulative_sum_all_boundaries(tmp_path, seed) -> None:
    """At a level equal to a cumulative sum the cell reaching it is whole and inside.

    ``exclude`` and ``include`` equal ligo.skymap's greedy region (``cls <=
    level``: nothing more is needed), ``split`` equals mocpy.  Between two
    cumulative sums ``include`` adds the crossing cell.
    """
    uniq, dens = dyadic_skymap_arrays(seed)
    data = multiorder_fits_bytes(uniq, dens)
    path = tmp_path / "dyadic.fits"
    path.write_bytes(data)
    sm = read_skymap(data)
    prob = sm.cell_probabilities()
    assert sm.meta.prob_sum == 1.0 and prob.sum() == 1.0
    cls = np.sort(find_greedy_credible_levels(prob, sm.probdensity))
    assert cls[-1] == 1.0 and np.all(np.diff(cls) > 0)
    between = (cls[:-1] + cls[1:]) / 2
    for level in np.concatenate([cls, between]):
        hit = bool(np.any(cls == level))
        regions = {b: credible_ranges(sm, [level], b)[0] for b in ("exclude", "include", "split")}
        for b in ("exclude", "include"):
            assert np.array_equal(regions[b], _greedy_reference(sm, level, b)), (b, level)
        if hit:
            assert np.array_equal(regions["include"], regions["exclude"]), level
            assert probability_in_ranges(sm, regions["exclude"]) == level
        else:
            assert probability_in_ranges(sm, regions["include"]) > level > probability_in_ranges(
                sm, regions["exclude"])
        ref = MOC.from_multiordermap_fits_file(str(path), cumul_to=float(level))
        assert np.array_equal(regions["split"], ranges_of(ref)), ("split", level)


@pytest.mark.parametrize("name", ["S190814bv_bayestar.multiorder.fits", "MS181101ab_bayestar.multiorder.fits"])
def test_exact_cumulative_levels_on_real_maps(name) -> None:
    """Levels equal to the cumulative probability of a ranked cell, on real maps.

    The cell whose cumulative sum equals the level belongs to the region
    (``<= level``), as in ligo.skymap and mocpy; dropping it (a ``<``
    comparison) changes all three boundaries.
    """
    path = shared_path("skymaps", name)
    sm = read_skymap(path)
    prob = sm.cell_probabilities()
    cls = find_greedy_credible_levels(prob, sm.probdensity)
    order = np.argsort(cls, kind="stable")
    ranked = cls[order]
    for target in (0.5, 0.9):
        k = int(np.searchsorted(ranked, target))
        for j in (k - 1, k, k + 1):
            level = float(ranked[j])
            # The rank is free of ties, so our sequential cumulative sum is ligo.skymap's.
            assert sm.probdensity[order[j]] not in (sm.probdensity[order[j - 1]], sm.probdensity[order[j + 1]])
            ex, inc, sp = (credible_ranges(sm, [level], b)[0] for b in ("exclude", "include", "split"))
            ref = _greedy_reference(sm, level, "exclude")
            assert np.array_equal(ex, ref), (target, j)
            assert np.array_equal(inc, ref), (target, j)
            assert probability_in_ranges(sm, ex) == pytest.approx(level, abs=1e-12)
            mocpy_ref = MOC.from_multiordermap_fits_file(str(path), cumul_to=level)
            assert np.array_equal(sp, ranges_of(mocpy_ref)), (target, j)
