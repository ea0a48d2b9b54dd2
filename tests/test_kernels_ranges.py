"""MOC set algebra kernels against mocpy, on generated and real MOCs."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from gwfollow.kernels import ranges as kr
from hypothesis import given, settings
from mocpy import MOC

from gwfollow.regions.moc import moc_from_ranges, ranges_of

from .conftest import shared_path
from .strategies import canonical_ranges


def _m(r: np.ndarray) -> MOC:
    return moc_from_ranges(r, 29)


@given(canonical_ranges(), canonical_ranges())
@settings(max_examples=150, deadline=None)
def test_set_algebra_matches_mocpy(a: np.ndarray, b: np.ndarray) -> None:
    ma, mb = _m(a), _m(b)
    assert np.array_equal(kr.union(a, b), ranges_of(ma.union(mb)))
    assert np.array_equal(kr.intersection(a, b), ranges_of(ma.intersection(mb)))
    # mocpy 0.21's own difference() drops everything when b lies wholly after
    # a (0/0 minus 0/1 gives an empty MOC), so the reference is a & ~b.
    assert np.array_equal(kr.difference(a, b), ranges_of(ma.intersection(mb.complement())))
    assert np.array_equal(kr.complement(a), ranges_of(ma.complement()))
    for r in (kr.union(a, b), kr.intersection(a, b), kr.difference(a, b), kr.complement(a)):
        assert kr.is_canonical(r)


@given(canonical_ranges())
@settings(max_examples=100, deadline=None)
def test_to_uniq_and_normalize(a: np.ndarray) -> None:
    cells = kr.to_uniq(a)
    # to_uniq is the minimal NUNIQ decomposition; rebuilding gives a back.
    from gwfollow.kernels.healpix import uniq_to_ranges

    assert np.array_equal(kr.normalize(uniq_to_ranges(cells)), a)
    if a.shape[0]:
        m = MOC.from_healpix_cells(*_levels_ipix(cells), max_depth=29)
        assert np.array_equal(ranges_of(m), a)


def _levels_ipix(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from gwfollow.kernels.healpix import uniq_to_order_ipix

    o, p = uniq_to_order_ipix(cells)
    return p.astype(np.uint64), o.astype(np.uint8)


def test_mocpy_difference_bug_is_not_ours() -> None:
    """Documented for the record: mocpy 0.21 gets this difference wrong."""
    a = MOC.from_str("0/0")
    b = MOC.from_str("0/1")
    assert np.array_equal(kr.difference(ranges_of(a), ranges_of(b)), ranges_of(a))
    assert a.intersection(b.complement()) == a


def test_normalize_merges_overlaps_and_adjacent() -> None:
    r = np.array([[10, 20], [0, 5], [5, 8], [15, 30], [40, 40]], dtype=np.int64)
    assert kr.normalize(r).tolist() == [[0, 8], [10, 30]]


@given(canonical_ranges(max_order=8), canonical_ranges(max_order=8))
@settings(max_examples=60, deadline=None)
def test_contains_and_overlap(a: np.ndarray, b: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    pix = rng.integers(0, kr.NPIX29, 500)
    got = kr.contains(a, pix)
    ref = np.zeros(pix.size, bool)
    for s, e in a:
        ref |= (pix >= s) & (pix < e)
    assert np.array_equal(got, ref)
    ov = kr.overlap_lengths(b, a)
    for (s, e), n in zip(b, ov):
        assert n == kr.count_pixels(kr.intersection(a, np.array([[s, e]], dtype=np.int64)))


def test_point_in_moc_matches_mocpy() -> None:
    from astropy import units as u
    from gwfollow.kernels.healpix import lonlat_to_nest

    moc = MOC.from_cone(lon=30 * u.deg, lat=20 * u.deg, radius=10 * u.deg, max_depth=12)
    rng = np.random.default_rng(1)
    lon = rng.uniform(0, 2 * np.pi, 50000)
    lat = np.arcsin(rng.uniform(-1, 1, 50000))
    got = kr.contains(ranges_of(moc), lonlat_to_nest(29, lon, lat))
    ref = moc.contains_lonlat(lon * u.rad, lat * u.rad)
    assert np.array_equal(got, ref)
    assert got.sum() > 100


@pytest.mark.parametrize("a,b", [("P-SDSS9-r.moc.fits", "CDS-I-125A-catalog_MOC.fits"),
                                 ("sdss_moc.range.fits", "glimpse.moc.json")])
def test_real_survey_mocs(a: str, b: str) -> None:
    ma = _load(shared_path("mocs", a))
    mb = _load(shared_path("mocs", b))
    ra, rb = ranges_of(ma), ranges_of(mb)
    assert np.array_equal(kr.union(ra, rb), ranges_of(ma.union(mb)))
    assert np.array_equal(kr.intersection(ra, rb), ranges_of(ma.intersection(mb)))
    assert np.array_equal(kr.difference(ra, rb), ranges_of(ma.intersection(mb.complement())))


def _load(p) -> MOC:
    if p.suffix == ".json":
        import json

        return MOC.from_json({k: v for k, v in json.loads(p.read_text()).items()})
    return MOC.load(str(p), format="fits")


@given(canonical_ranges())
@settings(max_examples=150, deadline=None)
def test_probability_of_few_ranges_equals_the_full_scan(r: np.ndarray) -> None:
    """The path that visits only the touched cells returns the same double."""
    from gwfollow.kernels.probability import (
        probability_in_ranges,
        probability_in_ranges_sorted,
    )

    sm = _sim_map()
    starts, ends = sm.sorted_cells
    for moc in (r, r[: max(1, r.shape[0] // 3)], r >> 20 << 20):
        moc = kr.normalize(moc)
        assert (probability_in_ranges_sorted(starts, ends, sm.by_start, sm.prob, moc)
                == probability_in_ranges(sm.ranges, sm.prob, moc))


@functools.cache
def _sim_map():
    from gwfollow.skymaps.simulate import simulated_skymap_bytes
    from gwfollow.skymaps.skymap import read_skymap

    return read_skymap(simulated_skymap_bytes(8, ra_deg=30.0, dec_deg=10.0, size_deg=20.0))


def _random_ranges(rng: np.random.Generator, n: int, lo: int = 0, hi: int = kr.NPIX29) -> np.ndarray:
    """About ``n`` canonical ranges with random bounds in ``[lo, hi)``."""
    pts = np.unique(rng.integers(lo, hi, 2 * n))
    pts = pts[: pts.size // 2 * 2].reshape(-1, 2)
    return kr.normalize(pts)


@given(canonical_ranges(max_cells=6), canonical_ranges(max_cells=300))
@settings(max_examples=150, deadline=None)
def test_galloping_intersection_matches_sweep_and_mocpy(small: np.ndarray, big: np.ndarray) -> None:
    ref = kr._intersection_flat(small.reshape(-1), big.reshape(-1)).reshape(-1, 2)
    for got in (kr.intersection_gallop(small, big), kr.intersection_gallop(big, small)):
        assert np.array_equal(got, ref)
        assert kr.is_canonical(got)
    assert np.array_equal(kr.intersection(small, big), ranges_of(_m(small).intersection(_m(big))))


@pytest.mark.parametrize("seed", range(5))
def test_galloping_intersection_on_skewed_sizes(seed: int) -> None:
    """Small x huge, with the small one clustered, spread, or spanning many big ranges."""
    rng = np.random.default_rng(seed)
    big = _random_ranges(rng, 200_000)
    cases = [
        _random_ranges(rng, 100),                                      # spread over the sky
        _random_ranges(rng, 100, int(big[5000, 0]), int(big[5200, 1])),  # one cluster
        np.array([[0, kr.NPIX29 // 3], [kr.NPIX29 // 2, kr.NPIX29]], dtype=np.int64),  # huge ranges
        np.array([[int(big[7, 0]), int(big[7, 1])]], dtype=np.int64),  # exactly one big range
        np.array([[int(big[7, 1]), int(big[8, 0])]], dtype=np.int64),  # the gap between two
        np.empty((0, 2), dtype=np.int64),
    ]
    for small in cases:
        ref = kr._intersection_flat(small.reshape(-1), big.reshape(-1)).reshape(-1, 2)
        got = kr.intersection(small, big)
        assert np.array_equal(got, ref)
        assert np.array_equal(kr.intersection(big, small), ref)
    assert kr.intersection(cases[3], big).tolist() == cases[3].tolist()
    assert kr.intersection(cases[4], big).shape == (0, 2)
