"""Spherical-cap kernels against healpy and a brute-force scan of every cell."""

from __future__ import annotations

import functools
import math

import healpy as hp
import numpy as np
import pytest
from gwfollow.kernels import geometry as kgeo
from gwfollow.kernels import ranges as kr
from hypothesis import given, settings
from hypothesis import strategies as st


@functools.lru_cache(maxsize=None)
def _centres(order: int) -> np.ndarray:
    """Unit vectors of all cell centres at ``order`` (healpy), shape (npix, 3)."""
    nside = 2**order
    return np.array(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)), nest=True)).T.copy()


def _brute_ranges(order: int, lon0: float, lat0: float, radius: float) -> np.ndarray:
    """Every cell whose centre is within ``radius`` of ``c`` (``p . c >= cos(radius)``), as ranges."""
    c = np.array([math.cos(lat0) * math.cos(lon0), math.cos(lat0) * math.sin(lon0), math.sin(lat0)])
    # Past pi the cosine turns back up; every point is within pi of c.
    ipix = np.flatnonzero(_centres(order) @ c >= math.cos(min(radius, math.pi))).astype(np.int64)
    s = 2 * (29 - order)
    return kr.normalize(np.stack([ipix << s, (ipix + 1) << s], axis=1))


@pytest.mark.parametrize("order", [0, 1, 2, 5, 10, 13, 20, 29])
def test_centres_match_healpy(order: int) -> None:
    rng = np.random.default_rng(order)
    npix = 12 * 4**order
    ipix = np.concatenate([np.arange(min(npix, 48)), rng.integers(0, npix, 5000), [npix - 1]]).astype(np.int64)
    lon, lat = kgeo.nest_to_lonlat(order, ipix)
    theta, phi = hp.pix2ang(2**order, ipix, nest=True)
    # Compare directions (longitude is undefined at the poles).
    got = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    ref = np.array(hp.pix2vec(2**order, ipix, nest=True))
    assert np.abs(got - ref).max() < 1e-13
    assert np.all((lon >= 0) & (lon < 2 * np.pi))
    np.testing.assert_allclose(lat, np.pi / 2 - theta, atol=1e-12)


@pytest.mark.parametrize("order", [0, 1, 3, 8, 16, 29])
def test_max_pixrad_matches_healpy(order: int) -> None:
    assert kgeo.max_pixrad(order) == pytest.approx(hp.max_pixrad(2**order), rel=1e-12)


CAPS = [
    (1.0, 0.5, math.radians(60.0)),  # a 2-airmass cap
    (4.2, -1.2, math.radians(48.19)),  # crosses the south pole
    (0.0, math.pi / 2, math.radians(30.0)),  # centred on the north pole
    (2.0, -math.pi / 2 + 1e-9, math.radians(75.5)),
    (5.9, 0.01, math.radians(0.7)),  # about one order-6 cell
    (3.3, 0.2, math.radians(150.0)),  # more than a hemisphere
    (0.3, -0.4, 1e-6),  # smaller than any cell: usually empty
]


@pytest.mark.parametrize("order", [0, 1, 4, 6, 8])
@pytest.mark.parametrize("cap", CAPS)
def test_cap_ranges_equal_brute_force(order: int, cap: tuple[float, float, float]) -> None:
    got = kgeo.cap_ranges(order, *cap)
    assert kr.is_canonical(got)
    assert np.array_equal(got, _brute_ranges(order, *cap))


@pytest.mark.parametrize("order", [3, 7, 9])
def test_cap_cells_equal_query_disc(order: int) -> None:
    rng = np.random.default_rng(100 + order)
    for _ in range(5):
        lon, lat = rng.uniform(0, 2 * np.pi), math.asin(rng.uniform(-1, 1))
        radius = rng.uniform(0.01, 2.5)
        vec = hp.ang2vec(np.pi / 2 - lat, lon)
        ref = np.sort(hp.query_disc(2**order, vec, radius, inclusive=False, nest=True))
        assert np.array_equal(kgeo.cap_cells(order, lon, lat, radius), ref)


@given(
    st.integers(0, 7),
    st.floats(-10.0, 10.0),
    st.floats(-math.pi / 2, math.pi / 2),
    st.floats(0.0, 3.2),
)
@settings(max_examples=120, deadline=None)
def test_cap_ranges_property(order: int, lon: float, lat: float, radius: float) -> None:
    got = kgeo.cap_ranges(order, lon, lat, radius)
    assert kr.is_canonical(got)
    assert np.array_equal(got, _brute_ranges(order, lon, lat, radius))


def test_degenerate_radii() -> None:
    assert kgeo.cap_ranges(8, 1.0, 0.2, -0.1).shape == (0, 2)
    full = kgeo.cap_ranges(8, 1.0, 0.2, math.pi)
    assert np.array_equal(full, np.array([[0, kr.NPIX29]]))
    assert np.array_equal(kgeo.cap_ranges(3, 1.0, 0.2, 4.0), full)
    assert kgeo.cap_cells(2, 0.0, 0.0, math.pi).tolist() == list(range(192))


def test_deep_order_is_edge_bound() -> None:
    # At order 14 a 60 deg cap has ~1.6e9 cells; only its edge is walked.
    r = kgeo.cap_ranges(14, 0.7, 0.3, math.radians(60.0))
    assert kr.is_canonical(r)
    frac = kr.count_pixels(r) / kr.NPIX29
    assert frac == pytest.approx((1 - math.cos(math.radians(60.0))) / 2, abs=1e-4)
