"""HEALPix kernels against healpy."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from gwfollow.kernels import healpix as khp
from hypothesis import given, settings
from hypothesis import strategies as st


@given(st.integers(0, 29), st.data())
@settings(max_examples=60, deadline=None)
def test_uniq_roundtrip_matches_healpy(order: int, data) -> None:
    ipix = np.array(data.draw(st.lists(st.integers(0, 12 * 4**order - 1), min_size=1, max_size=20)), dtype=np.int64)
    uniq = khp.order_ipix_to_uniq(np.full(ipix.size, order, dtype=np.int64), ipix)
    assert np.array_equal(uniq, 4 * 4**order + ipix)
    o, p = khp.uniq_to_order_ipix(uniq)
    assert np.all(o == order) and np.array_equal(p, ipix)
    from astropy_healpix import uniq_to_level_ipix

    ref_o, ref_p = uniq_to_level_ipix(uniq)
    assert np.array_equal(ref_o, o) and np.array_equal(ref_p, p)


def test_invalid_uniq_flagged() -> None:
    o, _ = khp.uniq_to_order_ipix(np.array([0, 3, 4, 16, 2**62], dtype=np.int64))
    assert list(o) == [-1, -1, 0, 1, -1]  # 2**62 would be order 30
    code, where = khp.check_cells(np.array([4, 5, 2], dtype=np.int64))
    assert (code, where) == (1, 2)
    code, where = khp.check_cells(np.array([4, 16, 5], dtype=np.int64))  # 16 is a child of 4
    assert code == 2


@pytest.mark.parametrize("order", [0, 1, 5, 10, 13, 20, 29])
def test_lonlat_to_nest_matches_healpy(order: int) -> None:
    rng = np.random.default_rng(order)
    n = 20000
    lon = rng.uniform(0, 2 * np.pi, n)
    lat = np.arcsin(rng.uniform(-1, 1, n))
    # Include the poles, the zone boundaries and the seams of the base cells.
    lat = np.concatenate([lat, [np.pi / 2, -np.pi / 2, np.arcsin(2 / 3), -np.arcsin(2 / 3), 0.0, 1.5707, -1.5707]])
    lon = np.concatenate([lon, [0.0, 0.0, 0.0, np.pi / 2, np.pi, 3.0, 6.2]])
    got = khp.lonlat_to_nest(order, lon, lat)
    ref = hp.ang2pix(2**order, np.pi / 2 - lat, lon, nest=True)
    assert np.array_equal(got, ref)
    deg_lon, deg_lat = np.degrees(lon), np.degrees(lat)
    assert np.array_equal(khp.lonlat_deg_to_nest(order, deg_lon, deg_lat),
                          khp.lonlat_to_nest(order, np.radians(deg_lon), np.radians(deg_lat)))


@pytest.mark.parametrize("order", [0, 1, 2, 5, 8])
def test_nest_to_ring_matches_healpy(order: int) -> None:
    nside = 2**order
    got = khp.nest_to_ring_order(order)
    ref = hp.nest2ring(nside, np.arange(12 * nside * nside))
    assert np.array_equal(got, ref)


def test_cells_cover_sphere() -> None:
    assert khp.cells_cover_sphere(np.arange(4, 16, dtype=np.int64))
    assert not khp.cells_cover_sphere(np.arange(4, 15, dtype=np.int64))
