"""TAP benchmark: a 90 % credible-region catalogue query through a real TAP
service (a private DaCHS, ``tests/dachs_server.py``) vs the local-file path.

For each (sky map, catalogue) pair of ../shared/data -- MS181101ab with the
GLADE+ NGC 4993 cone (5,268 galaxies), S190814bv with gwemopt's catalogue
(2,000 galaxies) -- prints the median time of:

* ``local read``: ``read_catalog(csv)`` (parse the file),
* ``local select``: the exact region filter on the in-memory catalogue,
* ``tap moc`` / ``tap cone``: ``TapCatalogSource.query_region`` with a MOC or
  a cone constraint (synchronous), server rows and rows kept,
* ``tap async``: the same MOC query as a UWS job,

and the set-up time of the DaCHS instance.  Needs root and Debian's
``gavodachs2-server`` (installed on first use, ~1 min).

Usage: ``python benchmarks/bench_tap.py [--repeat 5]``
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
PAIRS = (
    ("MS181101ab_bayestar.multiorder.fits", "gwf.glade", "GLADEplus_HyperLedaSizes_cone10deg_NGC4993.csv"),
    ("S190814bv_bayestar.multiorder.fits", "gwf.gwemopt", "gwemopt_catalog_glade_S190814bv.csv"),
)


def timeit(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(args: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    opts = p.parse_args(args)
    sys.path.insert(0, str(ROOT))
    from gwfollow.kernels.healpix import lonlat_to_nest
    from gwfollow.kernels.ranges import contains

    from gwfollow.regions.moc import credible_ranges, ranges_area_deg2
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.catalogues import read_catalog
    from gwfollow.targets.tap import TapCatalogSource
    from tests.dachs_server import DachsServer, ensure_dachs

    t0 = time.perf_counter()
    installed = ensure_dachs()
    t_install = time.perf_counter() - t0
    with DachsServer(SHARED / "catalogs") as dachs:
        print(f"DaCHS: install {t_install:.1f} s ({'ran' if installed else 'already there'}), "
              f"instance set-up {dachs.setup_seconds['total']:.1f} s {dachs.setup_seconds}")
        for skymap, table, csv in PAIRS:
            sm = read_skymap(SHARED / "skymaps" / skymap)
            reg = credible_ranges(sm, [0.9], "include")[0]
            path = SHARED / "catalogs" / csv
            cat = read_catalog(path)
            pix = lonlat_to_nest(29, np.radians(cat.ra), np.radians(cat.dec))
            print(f"\n{skymap} x {table}: 90 % region {ranges_area_deg2(reg):.1f} deg², {len(cat)} galaxies")
            rows = {
                "local read": (timeit(lambda: read_catalog(path), opts.repeat), len(cat), len(cat)),
                "local select": (timeit(lambda: cat.subset(np.flatnonzero(contains(reg, pix))), opts.repeat),
                                 len(cat), int(contains(reg, pix).sum())),
            }
            for label, kw in (("tap moc", {"constraint": "moc"}), ("tap cone", {"constraint": "cone"}),
                              ("tap async", {"constraint": "moc", "execution": "async"})):
                src = TapCatalogSource(dachs.url, table, order_by="row_no", **kw)
                src.table_columns()
                src.spellings()
                t = timeit(lambda: src.query_region(reg), opts.repeat)
                rows[label] = (t, src.last_query["rows_server"], src.last_query["rows"])
            for label, (t, n_server, n) in rows.items():
                print(f"  {label:<13} {t * 1e3:9.1f} ms   rows read {n_server:6d}   kept {n:6d}")


if __name__ == "__main__":
    main()
