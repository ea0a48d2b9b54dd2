"""HEALPix-partitioned (HATS) catalogues: import, MOC pruning, ranking identical to one file.

References: ``hats`` (validation of the layout) and ``lsdb`` (reading it,
``moc_search``) for the format and the region selection;
:func:`gwfollow.targets.rank.rank_galaxies` on the same rows from one file for the
ranking; ``math.fsum`` for the exact normalisation.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gwfollow.kernels.rank import exact_sum_limbs
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gwfollow.cli.main import main
from gwfollow.errors import CatalogError
from gwfollow.regions.moc import credible_ranges
from gwfollow.skymaps.simulate import simulated_skymap_bytes
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.targets.catalogues import read_catalog
from gwfollow.targets.hats_writer import import_catalog, plan_partitions
from gwfollow.targets.partitioned import HEALPIX_COLUMN, PartitionedCatalog, is_partitioned, rank_partitioned
from gwfollow.targets.rank import exact_total, limbs_to_float, rank_galaxies

from .conftest import shared_path

N_ROWS = 2_000_000
CLUSTER = (197.45, -23.38)  # a dense clump (around NGC 4993) forces finer partitions there


def _generated_table(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    m = n // 10  # 10 % of the rows within ~3 deg of CLUSTER
    ra[:m] = CLUSTER[0] + rng.normal(0, 1.5, m) / np.cos(np.radians(CLUSTER[1]))
    dec[:m] = CLUSTER[1] + rng.normal(0, 1.5, m)
    dist = rng.uniform(5, 600, n)
    z = np.full(n, np.nan)
    nodist = rng.random(n) < 0.04
    dist[nodist] = np.nan
    half = np.flatnonzero(nodist)[::2]
    z[half] = rng.uniform(0.001, 0.1, half.size)  # distance from redshift (Planck18) for these
    dec[rng.integers(0, n, 20)] = np.nan  # unusable positions: left out, counted
    bmag = rng.uniform(9, 21, n)
    bmag[rng.random(n) < 0.1] = np.nan
    return pa.table({"GLADE_no": np.arange(n, dtype=np.int64) * 3 + 1, "RAJ2000": ra, "DEJ2000": dec,
                     "d_L": dist, "z": z, "Bmag": bmag})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated catalogue of 2e6 rows as one Parquet file and as a HATS directory."""
    d = tmp_path_factory.mktemp("partitioned")
    src = d / "galaxies.parquet"
    pq.write_table(_generated_table(N_ROWS), src)
    summary = import_catalog(src, d / "hats", max_rows=40_000, row_group_rows=4096, batch_rows=700_000)
    return src, d / "hats", summary


@pytest.fixture(scope="module")
def single_file(generated):
    return read_catalog(generated[0])


@pytest.fixture(scope="module")
def cluster_map():
    """A simulated map centred on the dense clump (about 30 deg^2 at 90 %)."""
    return read_skymap(simulated_skymap_bytes(11, ra_deg=CLUSTER[0], dec_deg=CLUSTER[1], size_deg=3.0,
                                              distance_mpc=120.0))


# --------------------------------------------------------------------------- planning, sums


@given(st.lists(st.tuples(st.integers(0, 12 * 4**3 - 1), st.integers(1, 500)), min_size=1, max_size=200),
       st.integers(1, 2000), st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_plan_partitions_covers_every_row_once(cells, max_rows, lowest) -> None:
    counts = np.zeros(12 * 4**3, dtype=np.int64)
    for p, c in cells:
        counts[p] += c
    parts = plan_partitions(counts, 3, max_rows, lowest)
    owner = np.full(counts.size, -1)
    for i, q in enumerate(parts):
        assert lowest <= q.order <= 3
        span = 4 ** (3 - q.order)
        sub = slice(q.pixel * span, (q.pixel + 1) * span)
        assert (owner[sub] == -1).all(), "partitions overlap"
        owner[sub] = i
        rows = counts[sub].sum()
        assert rows > 0, "empty partition"
        assert rows <= max_rows or q.order == 3
        if q.order > lowest:  # the coarsest cell that fits: its parent does not
            pspan = 4 * span
            parent = counts[(q.pixel // 4) * pspan:(q.pixel // 4 + 1) * pspan].sum()
            assert parent > max_rows
    assert (owner[counts > 0] >= 0).all(), "a non-empty pixel has no partition"
    assert [q.start for q in parts] == sorted(q.start for q in parts)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), max_size=300), st.data())
@settings(max_examples=300, deadline=None)
def test_exact_sum_limbs_sum_like_fsum_in_any_grouping(values, data) -> None:
    a = np.array(values, dtype=np.float64)
    finite = [v for v in values if math.isfinite(v)]
    try:
        expected = math.fsum(finite)
    except OverflowError:  # the exact sum is beyond the largest double
        return
    assume(math.isfinite(expected))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=5)))
    pieces = np.split(a, cuts)
    assert limbs_to_float(*(exact_sum_limbs(p) for p in pieces)) == expected
    assert exact_total(a) == expected


def test_exact_sum_of_many_values() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(-20, 8, 3_000_000)
    a[::7] = 0.0
    assert exact_total(a) == math.fsum(a)
    assert exact_total(a[::-1].copy()) == exact_total(a)


# --------------------------------------------------------------------------- layout


def test_import_writes_a_hats_catalogue_hats_and_lsdb_read(generated) -> None:
    import lsdb
    from hats.io.validation import is_valid_catalog

    src, out, s = generated
    assert s.rows == N_ROWS - s.dropped and 0 < s.dropped <= 20
    assert s.max_partition_rows <= 40_000
    assert len(s.orders) > 1, "the dense clump should be cut finer than the rest"
    assert is_valid_catalog(out, strict=True, verbose=False)
    cat = lsdb.open_catalog(out)
    assert len(cat.get_healpix_pixels()) == s.partitions
    assert cat.hc_structure.catalog_info.total_rows == s.rows
    ours = PartitionedCatalog(out)
    assert ours.nrows == s.rows and len(ours.partitions) == s.partitions
    # Every file is sorted by pixel, its rows inside its partition.
    for q in ours.partitions[::17]:
        pix = pq.read_table(ours.file(q), columns=[HEALPIX_COLUMN]).column(0).to_numpy()
        assert np.all(np.diff(pix) >= 0) and pix[0] >= q.start and pix[-1] < q.stop


def test_region_rows_equal_lsdb_moc_search(generated, cluster_map) -> None:
    import lsdb
    from mocpy import MOC

    _, out, _ = generated
    region = credible_ranges(cluster_map, [0.9], "include")[0]
    ours, stats = PartitionedCatalog(out).read_region(region)
    theirs = lsdb.open_catalog(out).moc_search(MOC.from_depth29_ranges(29, region), fine=True).compute()
    assert len(ours) == len(theirs) > 1000
    assert np.array_equal(np.sort(ours.ids.astype(np.int64)), np.sort(theirs["GLADE_no"].to_numpy()))
    # Coarse pruning at work: few partitions, few row groups, few rows.
    assert stats.partitions_touched < stats.partitions_total / 2
    assert len(ours) <= stats.rows_read < min(stats.rows_total / 5, 2 * len(ours))


# --------------------------------------------------------------------------- ranking


def _assert_same_ranking(a, b) -> None:
    assert len(a) == len(b) and a.n_candidates == b.n_candidates
    assert np.array_equal(a.catalog.ids[a.rows], b.catalog.ids[b.rows])
    for attr in ("probdensity_2d", "probdensity_3d", "score", "cumscore"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr), equal_nan=True), attr
    for attr in ("ra", "dec", "dist", "bmag"):
        assert np.array_equal(getattr(a.catalog, attr)[a.rows], getattr(b.catalog, attr)[b.rows], equal_nan=True)


@pytest.mark.parametrize("limit,weighting", [(None, None), (50, None), (50, "B"), (1, None)])
def test_rank_equals_single_file_generated(generated, single_file, cluster_map, limit, weighting) -> None:
    _, out, _ = generated
    ref = rank_galaxies(cluster_map, single_file, weighting=weighting, limit=limit)
    got = rank_partitioned(cluster_map, out, weighting=weighting, limit=limit)
    _assert_same_ranking(ref, got)
    assert got.provenance["partitions_touched"] < got.provenance["partitions_total"]
    assert got.scan["rows_read"] >= got.n_candidates


@pytest.mark.parametrize("skymap", ["S190814bv_bayestar.multiorder.fits", "MS181101ab_bayestar.multiorder.fits"])
def test_rank_equals_single_file_real_maps(generated, single_file, skymap) -> None:
    _, out, _ = generated
    sm = read_skymap(shared_path("skymaps", skymap))
    for level, limit in ((0.9, 100), (0.999, None)):
        region = credible_ranges(sm, [level], "include")[0]
        _assert_same_ranking(rank_galaxies(sm, single_file, region=region, limit=limit),
                             rank_partitioned(sm, out, region=region, limit=limit))


@pytest.mark.parametrize("skymap,catalog,columns", [
    ("MS181101ab_bayestar.multiorder.fits", "GLADEplus_HyperLedaSizes_cone10deg_NGC4993.csv", None),
    ("S190814bv_bayestar.multiorder.fits", "gwemopt_catalog_glade_S190814bv.csv", None),
    ("S190814bv_bayestar.multiorder.fits", "OpenNGC_NGC.csv", None),  # ';'-separated, sexagesimal
])
def test_real_catalogues_import_and_rank_as_the_file(tmp_path, skymap, catalog, columns) -> None:
    src = shared_path("catalogs", catalog)
    s = import_catalog(src, tmp_path / "hats", max_rows=500, histogram_order=6)
    single = read_catalog(src)
    assert s.rows == len(single) and s.dropped == single.dropped
    sm = read_skymap(shared_path("skymaps", skymap))
    for weighting in (None, "B"):
        _assert_same_ranking(rank_galaxies(sm, single, level=None, weighting=weighting),
                             rank_partitioned(sm, tmp_path / "hats", level=None, weighting=weighting))
    single.index()  # the indexed path ranks the same
    _assert_same_ranking(rank_galaxies(sm, single, level=0.9, limit=20),
                         rank_partitioned(sm, tmp_path / "hats", level=0.9, limit=20))


def test_whole_sky_and_empty_region(generated, single_file) -> None:
    _, out, _ = generated
    sm = read_skymap(simulated_skymap_bytes(3, size_deg=8.0))
    got = rank_partitioned(sm, out, level=None, limit=10)
    assert got.scan["partitions_touched"] == got.scan["partitions_total"]
    assert got.scan["rows_read"] == got.scan["rows_total"] == got.n_candidates
    _assert_same_ranking(rank_galaxies(sm, single_file, level=None, limit=10), got)
    none = rank_partitioned(sm, out, region=np.empty((0, 2), dtype=np.int64))
    assert len(none) == 0 and none.scan["rows_read"] == 0


def test_reads_a_catalogue_written_by_lsdb(tmp_path) -> None:
    import lsdb

    t = _generated_table(60_000, seed=3)
    ok = np.isfinite(t.column("DEJ2000").to_numpy())
    t = t.filter(pa.array(ok))
    pq.write_table(t, tmp_path / "g.parquet")
    lsdb.from_dataframe(t.to_pandas(), catalog_name="g", ra_column="RAJ2000", dec_column="DEJ2000",
                        lowest_order=1, highest_order=6, partition_rows=5000).write_catalog(tmp_path / "lsdb")
    assert is_partitioned(tmp_path / "lsdb")
    sm = read_skymap(simulated_skymap_bytes(5, ra_deg=CLUSTER[0], dec_deg=CLUSTER[1], size_deg=4.0))
    for limit in (None, 30):
        _assert_same_ranking(rank_galaxies(sm, read_catalog(tmp_path / "g.parquet"), limit=limit),
                             rank_partitioned(sm, tmp_path / "lsdb", limit=limit))


def test_dask_localcluster_ranks_the_same(generated, cluster_map) -> None:
    from gwfollow.pipeline.distributed import dask_client

    _, out, _ = generated
    region = credible_ranges(cluster_map, [0.999], "include")[0]
    serial = rank_partitioned(cluster_map, out, region=region, limit=200, weighting="B")
    seen = []
    with dask_client(None, 2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert all(a.startswith("tcp://127.0.0.1:") for a in client.scheduler_info()["workers"])
        par = rank_partitioned(cluster_map, out, region=region, limit=200, weighting="B", client=client,
                               progress=lambda s, d, t: seen.append((d, t)))
        # Calls in a row on one client (the same data scattered again) must not cancel each other.
        for _ in range(3):
            _assert_same_ranking(par, rank_partitioned(cluster_map, out, region=region, limit=200, weighting="B",
                                                       client=client))
    _assert_same_ranking(serial, par)
    assert seen[-1] == (par.scan["partitions_touched"],) * 2
    assert par.scan["rows_read"] == serial.scan["rows_read"]
    assert all(v > 0 for v in par.scan["worker_peak_rss_mib"].values())


# --------------------------------------------------------------------------- commands, pipeline, errors


def test_commands_import_info_rank(tmp_path, generated, capsys) -> None:
    src = shared_path("catalogs", "gwemopt_catalog_glade_S190814bv.csv")
    assert main(["catalog", "import", str(src), "--out", str(tmp_path / "h"), "--max-rows", "300",
                 "--histogram-order", "7"]) == 0
    out = capsys.readouterr()
    assert "partitions" in out.out and "writing partitions" in out.err
    assert main(["catalog", "info", str(tmp_path / "h"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == len(read_catalog(src)) and info["roles"]["ra"]
    skymap = str(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))
    assert main(["rank", skymap, "--catalog", str(src), "--limit", "20", "--format", "json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["rank", skymap, "--catalog", str(tmp_path / "h"), "--limit", "20", "--format", "json"]) == 0
    cap = capsys.readouterr()
    b = json.loads(cap.out)
    assert a["rows"] == b["rows"] and len(a["rows"]) == 20
    assert "partitions" in cap.err
    # The output directory is never overwritten by accident.
    assert main(["catalog", "import", str(src), "--out", str(tmp_path / "h")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["rank", skymap, "--catalog", str(src), "--dask"]) == 2
    assert "partitioned" in capsys.readouterr().err


def test_pipeline_ranks_a_partitioned_catalogue(tmp_path) -> None:
    import dataclasses

    from gwfollow.config import load_config
    from gwfollow.products.core import process_message

    src = shared_path("catalogs", "gwemopt_catalog_glade_S190814bv.csv")
    import_catalog(src, tmp_path / "h", max_rows=300, histogram_order=7)
    skymap = shared_path("skymaps", "S190814bv_bayestar.multiorder.fits")
    cfg = load_config(env={})
    cfg = dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, catalogs=(str(tmp_path / "h"), str(src)),
                                                                galaxy_limit=50), telescopes=(), sites=())
    res = process_message(skymap.read_bytes(), "t", cfg)
    gal = [json.loads(p.data) for p in res.skymaps[0].products if p.kind == "galaxies"]
    assert len(gal) == 2 and "error" not in gal[0] and len(gal[0]["rows"]) == 50
    assert gal[0]["rows"] == gal[1]["rows"]


def test_bad_inputs_give_typed_errors(tmp_path, generated, cluster_map) -> None:
    _, out, _ = generated
    with pytest.raises(CatalogError, match="no such file"):
        import_catalog(tmp_path / "missing.csv", tmp_path / "o")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CatalogError, match="RA/Dec") as e:
        import_catalog(tmp_path / "t.csv", tmp_path / "o")
    assert "--columns" in e.value.hint
    (tmp_path / "r.csv").write_text(f"ra,dec,{HEALPIX_COLUMN}\n1,2,3\n")
    with pytest.raises(CatalogError, match="reserved"):
        import_catalog(tmp_path / "r.csv", tmp_path / "o")
    (tmp_path / "n.csv").write_text("ra,dec\nx,y\n,\n")
    with pytest.raises(CatalogError, match="usable position"):
        import_catalog(tmp_path / "n.csv", tmp_path / "o")
    assert not (tmp_path / "o").exists(), "a failed import leaves nothing behind"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "nor a temporary directory"
    with pytest.raises(CatalogError, match="not a HATS catalogue"):
        PartitionedCatalog(tmp_path)
    with pytest.raises(CatalogError, match="not a directory"):
        PartitionedCatalog(tmp_path / "t.csv")
    # A damaged partition file is named; the catalogue itself stays usable elsewhere.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    cat = PartitionedCatalog(broken)
    region = credible_ranges(cluster_map, [0.9], "include")[0]
    victim = cat.file(cat.partitions[int(cat.touched(region)[0])])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(CatalogError, match=f"{victim.name}: cannot read the partition") as e:
        rank_partitioned(cluster_map, cat, region=region)
    assert "re-import" in e.value.hint
    far = read_skymap(simulated_skymap_bytes(2, ra_deg=(CLUSTER[0] + 180) % 360, dec_deg=-CLUSTER[1]))
    assert len(rank_partitioned(far, cat, level=0.9)) > 0
    (broken / "partition_info.csv").write_text("Norder,Npix\n1,x\n")
    with pytest.raises(CatalogError, match="line 2"):
        PartitionedCatalog(broken)


def test_ties_rank_the_same_on_a_map_without_distances(generated, single_file) -> None:
    """A 2-D map (no distances): every galaxy of a cell ties; the limit falls inside ties."""
    _, out, _ = generated
    sm = read_skymap(shared_path("skymaps", "cWB_O3_20190928.fits.gz"))
    assert not sm.has_distance
    region = credible_ranges(sm, [0.5], "include")[0]
    for limit in (7, 100, 1000):
        ref = rank_galaxies(sm, single_file, region=region, limit=limit)
        got = rank_partitioned(sm, out, region=region, limit=limit)
        assert np.unique(ref.probdensity_2d).size < len(ref)  # there are ties
        _assert_same_ranking(ref, got)


def test_row_groups_pruned_by_the_pixel_column_behind_a_struct(tmp_path) -> None:
    """Parquet statistics are per leaf column: a struct before the pixel column must not shift them."""
    from gwfollow.targets.partitioned import read_partition

    rng = np.random.default_rng(9)
    pix = np.sort(rng.integers(0, 12 * 4**29, 5000))
    t = pa.table({"s": pa.array([{"x": int(i), "y": -int(i)} for i in range(5000)]), HEALPIX_COLUMN: pix})
    f = tmp_path / "p.parquet"
    pq.write_table(t, f, row_group_size=500)
    region = np.array([[pix[1234], pix[1234] + 1], [pix[4321], pix[4400]]], dtype=np.int64)
    got, st = read_partition(f, region, ["s", HEALPIX_COLUMN])
    inside = ((pix >= region[0, 0]) & (pix < region[0, 1])) | ((pix >= region[1, 0]) & (pix < region[1, 1]))
    assert np.array_equal(got.column(HEALPIX_COLUMN).to_numpy(), pix[inside])
    assert st["row_groups_read"] == 2


def test_import_keeps_column_roles_skips_comments_and_never_clobbers(tmp_path) -> None:
    lines = ["# a comment line", "# another one", "RA_deg,DEC_deg,D,name"]
    rng = np.random.default_rng(2)
    lines += [f"{a:.6f},{d:.6f},{x:.3f},g{i}" for i, (a, d, x) in
              enumerate(zip(rng.uniform(0, 360, 400), rng.uniform(-60, 60, 400), rng.uniform(10, 300, 400)))]
    src = tmp_path / "t.csv"
    src.write_text("\n".join(lines) + "\n")
    cols = {"ra": "RA_deg", "dec": "DEC_deg", "dist": "D", "id": "name"}
    import_catalog(src, tmp_path / "h", columns=cols, max_rows=100, histogram_order=5)
    cat = PartitionedCatalog(tmp_path / "h")  # no mapping given: the import's is kept
    assert {k: cat.roles[k] for k in cols} == cols
    sm = read_skymap(simulated_skymap_bytes(6, size_deg=30.0))
    plain = tmp_path / "plain.csv"  # the same table without the comment lines, for the single-file reader
    plain.write_text("\n".join(lines[2:]) + "\n")
    single = read_catalog(plain, columns=cols)
    _assert_same_ranking(rank_galaxies(sm, single, level=None), rank_partitioned(sm, cat, level=None))
    # --overwrite replaces a catalogue, never another directory.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(CatalogError, match="not a partitioned catalogue"):
        import_catalog(src, tmp_path / "docs", columns=cols, overwrite=True)
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"
    import_catalog(src, tmp_path / "h", columns=cols, max_rows=10, histogram_order=5, overwrite=True)
    assert len(PartitionedCatalog(tmp_path / "h").partitions) > len(cat.partitions)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_identifiers_with_nulls_are_the_same_strings(tmp_path) -> None:
    rng = np.random.default_rng(12)
    n = 3000
    ids = pa.array([None if i % 7 == 0 else i * 11 for i in range(n)], type=pa.int64())
    names = pa.array([None if i % 5 == 0 else f"G{i}" for i in range(n)])
    t = pa.table({"id": ids, "name": names, "ra": rng.uniform(0, 360, n),
                  "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))), "dist": rng.uniform(10, 400, n)})
    pq.write_table(t, tmp_path / "g.parquet")
    import_catalog(tmp_path / "g.parquet", tmp_path / "h", max_rows=300, histogram_order=5)
    sm = read_skymap(simulated_skymap_bytes(1, size_deg=40.0))
    _assert_same_ranking(rank_galaxies(sm, read_catalog(tmp_path / "g.parquet"), level=None),
                         rank_partitioned(sm, tmp_path / "h", level=None))
