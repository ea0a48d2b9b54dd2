"""Galaxy ranking against ligo.skymap's crossmatch, on real and generated maps."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import given, settings
from hypothesis import strategies as st
from ligo.skymap.io import read_sky_map
from ligo.skymap.postprocess.crossmatch import crossmatch

from gwfollow import read_skymap
from gwfollow.regions.moc import credible_ranges
from gwfollow.targets.catalogues import (
    Catalog,
    CatalogError,
    load_catalog,
    openngc,
    parse_columns,
    read_catalog,
)
from gwfollow.targets.rank import RankError, rank_galaxies

from .conftest import shared_path


def _crossmatch(path_or_bytes, cat: Catalog, rows: np.ndarray):
    import io

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    m = read_sky_map(src, moc=True)
    coords = SkyCoord(cat.ra[rows] * u.deg, cat.dec[rows] * u.deg, cat.dist[rows] * u.Mpc)
    return crossmatch(m, coords)


@pytest.mark.parametrize("skymap,catalog", [
    ("S190814bv_bayestar.multiorder.fits", "gwemopt_catalog_glade_S190814bv.csv"),
    ("MS181101ab_bayestar.multiorder.fits", "GLADEplus_HyperLedaSizes_cone10deg_NGC4993.csv"),
    ("GW190814_PublicationSamples.multiorder.fits", "gwemopt_catalog_glade_S190814bv.csv"),
])
def test_densities_equal_crossmatch(skymap, catalog) -> None:
    path = shared_path("skymaps", skymap)
    cat = read_catalog(shared_path("catalogs", catalog))
    sm = read_skymap(path)
    r = rank_galaxies(sm, cat, level=None, distance_grid="crossmatch")
    assert len(r) == len(cat)
    res = _crossmatch(path, cat, r.rows)
    np.testing.assert_allclose(r.probdensity_2d, res.probdensity, rtol=1e-12, atol=0)
    ok = res.probdensity_vol > 0
    np.testing.assert_allclose(r.probdensity_3d[ok], res.probdensity_vol[ok], rtol=1e-9, atol=0)
    # Ranks follow crossmatch's 3-D density.
    order = np.argsort(-res.probdensity_vol, kind="stable")
    assert np.array_equal(np.argsort(-r.probdensity_3d, kind="stable"), order)


@given(st.integers(0, 1000))
@settings(max_examples=5, deadline=None)
def test_generated_maps_and_catalogues(seed) -> None:
    from gwfollow.skymaps.simulate import simulated_skymap_bytes

    rng = np.random.default_rng(seed)
    data = simulated_skymap_bytes(seed, size_deg=float(rng.uniform(1, 6)), distance_mpc=float(rng.uniform(40, 400)),
                                  max_order=int(rng.integers(6, 9)))
    sm = read_skymap(data)
    n = 300
    cat = Catalog.from_arrays(rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                              rng.uniform(5, 800, n))
    r = rank_galaxies(sm, cat, level=None, distance_grid="crossmatch")
    res = _crossmatch(data, cat, r.rows)
    np.testing.assert_allclose(r.probdensity_2d, res.probdensity, rtol=1e-12)
    ok = res.probdensity_vol > 0
    np.testing.assert_allclose(r.probdensity_3d[ok], res.probdensity_vol[ok], rtol=1e-9)


def test_exact_mode_is_the_ansatz_at_the_galaxy_distance() -> None:
    sm = read_skymap(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))
    cat = read_catalog(shared_path("catalogs", "gwemopt_catalog_glade_S190814bv.csv"))
    r = rank_galaxies(sm, cat, level=None)
    from gwfollow.kernels.healpix import lonlat_to_nest

    pix = lonlat_to_nest(29, np.radians(cat.ra[r.rows]), np.radians(cat.dec[r.rows]))
    for k in range(0, len(r), 97):
        c = np.flatnonzero((sm.ranges[:, 0] <= pix[k]) & (pix[k] < sm.ranges[:, 1]))[0]
        d = cat.dist[r.rows[k]]
        ref = (sm.probdensity[c] * sm.distnorm[c] / (np.sqrt(2 * np.pi) * sm.distsigma[c])
               * np.exp(-0.5 * ((d - sm.distmu[c]) / sm.distsigma[c]) ** 2))
        assert r.probdensity_3d[k] == pytest.approx(ref, rel=1e-13)
    assert np.all(np.diff(r.score[np.isfinite(r.score)]) <= 0)
    assert r.cumscore[np.isfinite(r.cumscore)][-1] == pytest.approx(1.0)


def test_region_coarse_filter_equals_full_scan() -> None:
    sm = read_skymap(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))
    cat = read_catalog(shared_path("catalogs", "gwemopt_catalog_glade_S190814bv.csv"))
    region = credible_ranges(sm, [0.9], "include")[0]
    inside = rank_galaxies(sm, cat, region=region)  # fused scan (no index yet)
    assert not cat.has_index
    full = rank_galaxies(sm, cat, level=None)
    cat.index()
    indexed = rank_galaxies(sm, cat, region=region)  # coarse index, then fine
    assert np.array_equal(indexed.rows, inside.rows)
    np.testing.assert_array_equal(indexed.probdensity_3d, inside.probdensity_3d)
    np.testing.assert_allclose(indexed.cumscore, inside.cumscore, rtol=1e-12)  # sums in another order
    top = rank_galaxies(sm, cat, region=region, limit=10)
    assert np.array_equal(top.rows, inside.rows[:10])
    np.testing.assert_allclose(top.cumscore, inside.cumscore[:10], rtol=1e-12)
    from gwfollow.kernels import ranges as kr
    from gwfollow.kernels.healpix import lonlat_to_nest

    pix = lonlat_to_nest(29, np.radians(cat.ra), np.radians(cat.dec))
    expected = set(np.flatnonzero(kr.contains(region, pix)))
    assert set(inside.rows) == expected and inside.n_candidates == len(expected)
    keep = np.isin(full.rows, inside.rows)
    assert np.array_equal(full.rows[keep], inside.rows)  # same order


def test_weighting_2d_fallback_and_table(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    cat = openngc()
    # 9,980 galaxies have a redshift; those with z <= 0 (local blueshifts) get no distance.
    assert len(cat) == 10521 and 9900 < np.isfinite(cat.dist).sum() <= 9980
    r = rank_galaxies(sm, cat, level=None, weighting="B", limit=25)
    t = r.table()
    assert t.colnames == ["rank", "id", "ra", "dec", "dist_mpc", "probdensity_2d", "probdensity_3d", "score", "cumscore"]
    assert len(t) == 25 and list(t["rank"]) == list(range(1, 26))
    assert str(t["probdensity_3d"].unit) == "1 / Mpc3"
    # A map without distance ranks in 2-D.
    import dataclasses

    flat = dataclasses.replace(sm, distmu=None, distsigma=None, distnorm=None)
    r2 = rank_galaxies(flat, cat, level=0.9)
    assert r2.mode == "2d" and np.all(np.isnan(r2.probdensity_3d))
    assert np.all(np.diff(r2.probdensity_2d) <= 0)
    with pytest.raises(RankError):
        rank_galaxies(sm, cat, weighting="V")


def test_catalogue_columns_and_errors(tmp_path) -> None:
    ngc = read_catalog(shared_path("catalogs", "OpenNGC_NGC.csv"))  # ';'-separated, sexagesimal
    assert ngc.dropped > 0 and "left out" in " ".join(ngc.notes)
    i = list(ngc.ids).index("NGC4993")
    assert ngc.ra[i] == pytest.approx(197.448, abs=0.01) and ngc.dec[i] == pytest.approx(-23.384, abs=0.01)
    assert 30 < ngc.dist[i] < 50
    p = tmp_path / "t.csv"
    p.write_text("RA_deg,DE_deg,Dmpc\n10,20,100\n,5,3\n11,21,abc\n")
    with pytest.raises(CatalogError, match="RA/Dec"):
        read_catalog(p)
    c = read_catalog(p, columns=parse_columns("ra=RA_deg,dec=DE_deg,dist=Dmpc"))
    assert len(c) == 2 and c.dropped == 1 and np.isnan(c.dist[1])
    with pytest.raises(CatalogError, match="not role=column"):
        parse_columns("ra")
    with pytest.raises(CatalogError, match="no such file"):
        load_catalog(str(tmp_path / "nope.csv"))


def test_catalogue_formats(tmp_path) -> None:
    from astropy.table import Table

    t = Table({"RAJ2000": [10.0, 20.0, 30.0], "DEJ2000": [1.0, 2.0, 95.0], "Dist": [50.0, 60.0, 70.0],
               "GWGC": ["a", "b", "c"], "Bmag": [12.0, 13.0, 14.0]})
    for name, kw in (("c.fits", {}), ("c.xml", {"format": "votable"}), ("c.csv", {"format": "ascii.csv"})):
        t.write(tmp_path / name, overwrite=True, **kw)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({c: list(t[c]) for c in t.colnames}), tmp_path / "c.parquet")
    for name in ("c.fits", "c.xml", "c.csv", "c.parquet"):
        c = read_catalog(tmp_path / name)
        assert list(c.ids) == ["a", "b"] and c.dropped == 1, name
        np.testing.assert_array_equal(c.dist, [50.0, 60.0])
        np.testing.assert_array_equal(c.bmag, [12.0, 13.0])


@given(st.lists(st.tuples(st.sampled_from([np.nan, 0.0, 1.0, 2.0, 2.5, 1e-300, 7.0]),
                          st.sampled_from([0.0, 0.5, 1.0, 3.0])), max_size=60), st.integers(0, 70))
@settings(max_examples=300, deadline=None)
def test_top_positions_is_the_sorted_prefix_with_ties(rows, k) -> None:
    from gwfollow.kernels.rank import top_positions

    raw = np.array([r for r, _ in rows], dtype=np.float64)
    p2 = np.array([q for _, q in rows], dtype=np.float64)

    def key(i):
        return (0, -raw[i], -p2[i]) if np.isfinite(raw[i]) else (1, -p2[i], 0.0)

    got = top_positions(raw, p2, k)
    if k >= len(rows):
        assert got.tolist() == list(range(len(rows)))
        return
    if k == 0:
        assert got.size == 0
        return
    kth = sorted(key(i) for i in range(len(rows)))[k - 1]
    assert got.tolist() == [i for i in range(len(rows)) if key(i) <= kth]


@given(st.integers(0, 10_000), st.integers(0, 90), st.booleans(), st.integers(1, 9))
@settings(max_examples=40, deadline=None)
def test_whole_sky_top_k_scan_is_the_prefix_of_the_full_ranking(seed, k, with_distance, nchunks) -> None:
    """The one-pass whole-sky top-k (kernels.rank.scan_top_sky) gives exactly
    the first k rows, densities, scores and cumulative scores of the full
    ranking, with ties (repeated positions and distances, missing
    distances), for any slicing of the catalogue."""
    from dataclasses import replace

    from gwfollow.kernels import rank as krank
    from gwfollow.skymaps.simulate import simulated_skymap_bytes

    rng = np.random.default_rng(seed)
    sm = read_skymap(simulated_skymap_bytes(seed % 7, size_deg=float(rng.uniform(2, 30)), max_order=7))
    if not with_distance:
        sm = replace(sm, distmu=None, distsigma=None, distnorm=None)
    n = int(rng.integers(1, 400))
    ra = rng.choice(rng.uniform(0, 360, 40), n)  # repeated positions: ties in every key
    dec = rng.choice(np.degrees(np.arcsin(rng.uniform(-1, 1, 40))), n)
    dist = rng.choice(np.r_[np.nan, rng.uniform(5, 900, 8)], n)
    cat = Catalog.from_arrays(ra, dec, dist)
    full = rank_galaxies(sm, cat, level=None)
    top = rank_galaxies(sm, cat, level=None, limit=k)
    m = min(k, n)
    assert top.n_candidates == full.n_candidates == n
    assert np.array_equal(top.rows, full.rows[:m])
    np.testing.assert_array_equal(top.probdensity_2d, full.probdensity_2d[:m])
    np.testing.assert_array_equal(top.probdensity_3d, full.probdensity_3d[:m])
    np.testing.assert_array_equal(top.score, full.score[:m])
    np.testing.assert_array_equal(top.cumscore, full.cumscore[:m])
    # Any slicing (thread count) gives the same result, bit for bit.
    bs = sm.by_start
    starts, ends = sm.ranges[bs, 0].copy(), sm.ranges[bs, 1].copy()
    e = np.empty(0)
    table = krank.density_table(bs, sm.probdensity,
                                *((sm.distmu, sm.distsigma, sm.distnorm) if with_distance else (e, e, e)),
                                with_distance)
    args = (cat.ra, cat.dec, cat.dist, starts, ends, table, with_distance, krank.cell_lookup(ends, 5), 5, m)
    one, many = krank.scan_top_sky(*args, 1), krank.scan_top_sky(*args, nchunks)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
