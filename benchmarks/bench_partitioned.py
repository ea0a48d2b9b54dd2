"""Partitioned-catalogue benchmark: ranking against a 5e7-row HATS catalogue.

A synthetic galaxy catalogue (default 5e7 rows: id, ra, dec, dist, Bmag;
uniform on the sky plus clustered rows, a few per cent without distance) is
written once as one Parquet file and imported with
:func:`gwfollow.targets.hats_writer.import_catalog` (cached in ``--workdir``).  Two
regions are cut from real sky maps of ../shared/data at the credible level
whose area is closest to 30 deg^2 (S190814bv) and 1,000 deg^2 (S190425z).
For each region, in this one process:

* ``single file``: read the Parquet columns and rank them with
  :func:`gwfollow.targets.rank.rank_galaxies` (the fused scan; no partitions);
* ``lsdb``: ``lsdb.open_catalog(...).moc_search(moc, fine=True).compute()``
  -- the reference HATS reader's selection alone (no ranking);
* ``gwfollow``: :func:`gwfollow.targets.partitioned.rank_partitioned` in this process;
* ``gwfollow dask``: the same on a ``LocalCluster`` of 2 worker processes
  (started beforehand; its start-up time is printed apart).

It prints the time, rows read, partitions touched / total (the pruning),
row groups read, the ratios against the single file and lsdb, and peak
memory: the peak RSS of this process during each step, and of each Dask
worker process during the step (counts restarted with Linux ``clear_refs``).  The three rankings must agree exactly.

Usage: ``python benchmarks/bench_partitioned.py [--rows 50000000] [--workdir /tmp/gwfollow-bench]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REGIONS = (("S190814bv_bayestar.multiorder.fits", 30.0), ("S190425z_bayestar.fits.gz", 1000.0))


def peak_mib() -> float:
    from gwfollow.targets.partitioned import peak_rss_mib

    return peak_rss_mib()


def current_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) / 1024.0 for ln in f if ln.startswith("VmRSS:"))


def reset_peak() -> None:
    from gwfollow.targets.partitioned import reset_peak_rss

    reset_peak_rss()


def generate(path: Path, rows: int, chunk: int = 5_000_000) -> None:
    """Write the synthetic catalogue in chunks (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(2026)
    centres = np.column_stack([rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))])
    writer = None
    done = 0
    t0 = time.perf_counter()
    while done < rows:
        n = min(chunk, rows - done)
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        m = n // 4  # a quarter of the rows in clusters of ~1 deg
        c = centres[rng.integers(0, len(centres), m)]
        dec[:m] = np.clip(c[:, 1] + rng.normal(0, 1.0, m), -90, 90)
        ra[:m] = np.mod(c[:, 0] + rng.normal(0, 1.0, m) / np.maximum(np.cos(np.radians(dec[:m])), 0.05), 360)
        dist = rng.uniform(1, 1500, n) ** 1.0
        dist[rng.random(n) < 0.03] = np.nan
        t = pa.table({"id": np.arange(done, done + n, dtype=np.int64), "ra": ra, "dec": dec, "dist": dist,
                      "Bmag": rng.uniform(8, 22, n)})
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema)
        writer.write_table(t, row_group_size=1_000_000)
        done += n
        print(f"  generated {done:,}/{rows:,} rows ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    writer.close()


def region_for(skymap, target_deg2: float):
    """The credible region whose area is closest to ``target_deg2`` (bisection on the level)."""
    from gwfollow.regions.moc import credible_ranges, ranges_area_deg2

    lo, hi = 1e-4, 0.9999
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if ranges_area_deg2(credible_ranges(skymap, [mid], "include")[0]) < target_deg2:
            lo = mid
        else:
            hi = mid
    r = credible_ranges(skymap, [hi], "include")[0]
    return hi, r, ranges_area_deg2(r)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000_000)
    p.add_argument("--workdir", default="/tmp/gwfollow-bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--limit", type=int, default=1000)
    opts = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import pyarrow.parquet as pq

    from gwfollow.pipeline.distributed import dask_client
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.catalogues import Catalog
    from gwfollow.targets.hats_writer import import_catalog
    from gwfollow.targets.partitioned import PartitionedCatalog, rank_partitioned
    from gwfollow.targets.rank import rank_galaxies

    work = Path(opts.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"galaxies-{opts.rows}.parquet"
    hats = work / f"galaxies-{opts.rows}-hats"
    if not src.exists():
        print(f"generating {opts.rows:,} rows -> {src}", file=sys.stderr)
        generate(src, opts.rows)
    if not hats.exists():
        rss0 = peak_mib()
        s = import_catalog(src, hats, progress=lambda st, d, t: None)
        print(f"import: {s.rows:,} rows -> {s.partitions} partitions (orders {s.orders}, largest "
              f"{s.max_partition_rows:,}) in {s.seconds:.1f} s; process peak RSS {peak_mib():.0f} MiB "
              f"(was {rss0:.0f})")
    cat = PartitionedCatalog(hats)
    print(f"catalogue: {cat.nrows:,} rows, {len(cat.partitions)} partitions; source file "
          f"{src.stat().st_size / 2**30:.2f} GiB")

    t0 = time.perf_counter()
    client_cm = dask_client(None, 2)
    client = client_cm.__enter__()
    print(f"LocalCluster start (2 worker processes): {time.perf_counter() - t0:.1f} s")
    regions = []
    for mapname, target in REGIONS:
        sm = read_skymap(SHARED / "skymaps" / mapname)
        regions.append((mapname, sm, *region_for(sm, target)))
    results: dict[str, dict] = {}
    times: dict[str, dict] = {}
    try:
        # Partitioned first (this process's memory is then still small), then lsdb.
        for mapname, sm, level, region, area in regions:
            print(f"\n== {mapname}: {area:.1f} deg^2 (credible level {level:.4f}), limit {opts.limit}")
            res, tm = results.setdefault(mapname, {}), times.setdefault(mapname, {})
            runs = (("gwfollow", None), ("gwfollow dask", client))
            for name, cl in runs:
                rank_partitioned(sm, cat, region=region, limit=opts.limit, client=cl)  # warm
                ts, peaks = [], []
                for _ in range(opts.repeat):
                    base = current_mib()
                    reset_peak()
                    client.run(reset_peak)
                    t1 = time.perf_counter()
                    res[name] = rank_partitioned(sm, cat, region=region, limit=opts.limit, client=cl)
                    ts.append(time.perf_counter() - t1)
                    peaks.append(peak_mib())
                tm[name] = statistics.median(ts)
                sc = res[name].scan
                workers = ", ".join(f"{v:.0f}" for v in sorted(sc["worker_peak_rss_mib"].values()))
                print(f"  {name:14s} {tm[name] * 1e3:9.1f} ms  rows read {sc['rows_read']:>11,} of "
                      f"{sc['rows_total']:,} ({sc['rows_read'] / sc['rows_total']:.2%}), partitions "
                      f"{sc['partitions_touched']}/{sc['partitions_total']}, row groups {sc['row_groups_read']}, "
                      f"candidates {sc['candidates']:,}; peak RSS (MiB) "
                      + (f"per worker [{workers}]" if cl is not None else
                         f"this process {max(peaks):.0f} (RSS before {base:.0f})"))
            try:
                import lsdb
                from mocpy import MOC

                moc = MOC.from_depth29_ranges(29, region)
                lc = lsdb.open_catalog(hats, columns=["id", "ra", "dec", "dist", "Bmag"])
                lc.moc_search(moc, fine=True).compute()  # warm
                base = current_mib()
                reset_peak()
                t1 = time.perf_counter()
                sel = lc.moc_search(moc, fine=True).compute()
                tm["lsdb"] = time.perf_counter() - t1
                print(f"  {'lsdb select':14s} {tm['lsdb'] * 1e3:9.1f} ms  rows {len(sel):,} (moc_search fine, "
                      f"no ranking, its own Dask scheduler); peak RSS {peak_mib():.0f} MiB (before {base:.0f})")
                assert len(sel) == res["gwfollow"].n_candidates, "lsdb and gwfollow select different rows"
                del sel
            except ImportError:
                print("  lsdb not installed: skipped")
    finally:
        client_cm.__exit__(None, None, None)

    # Single file: read the columns once, rank each region with the fused scan.
    base = current_mib()
    reset_peak()
    t1 = time.perf_counter()
    tab = pq.read_table(src, columns=["id", "ra", "dec", "dist", "Bmag"])
    single = Catalog.from_arrays(tab["ra"].to_numpy(), tab["dec"].to_numpy(), tab["dist"].to_numpy(),
                                 ids=tab["id"].to_numpy(), bmag=tab["Bmag"].to_numpy(), name="single")
    del tab
    t_read = time.perf_counter() - t1
    print(f"\nsingle file: read {len(single):,} rows in {t_read:.1f} s, peak RSS {peak_mib():.0f} MiB (before "
          f"{base:.0f})")
    print("\nsummary (single file = read + rank; gwfollow = partitions read + ranked):")
    for mapname, sm, level, region, area in regions:
        res, tm = results[mapname], times[mapname]
        t2 = time.perf_counter()
        ref = rank_galaxies(sm, single, region=region, limit=opts.limit)
        t_rank = time.perf_counter() - t2
        tm["single"] = t_read + t_rank
        for name in ("gwfollow", "gwfollow dask"):
            r = res[name]
            same = (np.array_equal(ref.catalog.ids[ref.rows].astype(np.int64), r.catalog.ids[r.rows].astype(np.int64))
                    and np.array_equal(ref.score, r.score, equal_nan=True)
                    and np.array_equal(ref.probdensity_3d, r.probdensity_3d, equal_nan=True))
            assert same, f"{name} ranking differs from the single file"
        print(f"  {area:7.1f} deg^2: single file {tm['single']:.2f} s (rank alone {t_rank:.2f} s); gwfollow "
              f"{tm['gwfollow']:.3f} s ({tm['single'] / tm['gwfollow']:.0f}x; {t_rank / tm['gwfollow']:.1f}x the "
              f"in-memory rank alone), dask {tm['gwfollow dask']:.3f} s "
              f"({tm['single'] / tm['gwfollow dask']:.0f}x)"
              + (f"; lsdb select {tm['lsdb']:.3f} s ({tm['lsdb'] / tm['gwfollow']:.1f}x slower than gwfollow's "
                 f"select + rank)" if "lsdb" in tm else "") + "; rankings identical: True")


if __name__ == "__main__":
    main()
