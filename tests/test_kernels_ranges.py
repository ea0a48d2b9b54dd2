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
