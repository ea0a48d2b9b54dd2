"""Rank the galaxies of a catalogue by 3-D posterior density for a sky map."""

from __future__ import annotations

import argparse
import contextlib
import sys

EXAMPLE = """examples:
  gwfollow rank bayestar.multiorder.fits --catalog openngc --limit 20
  gwfollow rank bayestar.multiorder.fits --catalog glade.csv --weighting B -o targets.xml
      (VOTable by extension; opens in TOPCAT)
  gwfollow rank map.fits --catalog mytable.fits --columns ra=RA_deg,dec=DEC_deg,dist=D_L -o t.csv
  gwfollow rank map.fits --catalog "tap:http://dc.example.org/tap#glade.main" -o t.xml
  gwfollow rank map.fits --catalog glade-hats --dask --workers 2
      (a partitioned catalogue from 'gwfollow catalog import': the region's MOC picks the
       partitions to read; --dask ranks them on a LocalCluster, --dask tcp://HOST:8786 on yours)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("skymap", help="sky map FITS file")
    p.add_argument("--catalog", default="openngc",
                   help="'openngc' (embedded default), a table file (CSV, VOTable, FITS, Parquet), a "
                   "partitioned (HATS) catalogue directory, or a TAP table as tap:URL#TABLE (queried for the "
                   "region only)")
    p.add_argument("--columns", default=None, help="column mapping, e.g. ra=RA_deg,dec=DEC_deg,dist=D_L")
    p.add_argument("--level", type=float, default=0.999,
                   help="search the credible region at this level (default 0.999; 1 = whole sky)")
    p.add_argument("--weighting", choices=("B", "K"), default=None, help="weight by B- or K-band luminosity")
    p.add_argument("--limit", type=int, default=50, help="number of galaxies to list (default 50; 0 = all)")
    p.add_argument("--format", choices=("json", "csv", "votable"), default=None,
                   help="output format (default: by the extension of -o, else a text table)")
    p.add_argument("-o", "--output", default=None, help="output file (default: print a table)")
    p.add_argument("--dask", nargs="?", const="local", default=None, metavar="SCHEDULER",
                   help="partitioned catalogues: rank the partitions on a Dask cluster (a LocalCluster of "
                   "--workers processes, or the scheduler at SCHEDULER)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes for --dask (default 2)")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    # Commands import the science stack in main, so that `gwfollow --help` stays instant.
    from gwfollow.config import load_config
    from gwfollow.errors import CatalogError
    from gwfollow.products.report import format_for, table_bytes, write_table
    from gwfollow.regions.moc import credible_ranges
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.catalogues import parse_columns
    from gwfollow.targets.sources import PartitionedSource, open_catalog

    cfg = load_config(args.config)
    if args.output:
        format_for(args.output, args.format)
    sm = read_skymap(args.skymap, config=cfg.skymap)
    level = None if args.level >= 1 else args.level
    region = credible_ranges(sm, [level], "include")[0] if level is not None else None
    src = open_catalog(args.catalog, columns=parse_columns(args.columns))
    if args.dask and not isinstance(src, PartitionedSource):
        raise CatalogError("--dask needs a partitioned catalogue",
                           hint=f"make one with: gwfollow catalog import {args.catalog} --out DIR")

    def progress(stage: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\x1b[2Kpartitions ranked: {done}/{total}" + ("\n" if done == total else ""))
            sys.stderr.flush()

    with contextlib.ExitStack() as stack:
        client = None
        if args.dask:
            # Dask is heavy and optional: imported only for --dask.
            from gwfollow.pipeline.distributed import dask_client

            client = stack.enter_context(dask_client(None if args.dask == "local" else args.dask, args.workers))
        r = src.rank(sm, region, weighting=args.weighting, limit=args.limit or None, client=client,
                     progress=progress)
    cat = r.catalog
    t = r.table()
    if args.output:
        out = write_table(t, args.output, args.format)
        print(f"{len(t)} of {r.n_candidates} galaxies in the region ({r.mode} ranking, catalogue {cat.name}) -> {out}")
    elif args.format:
        sys.stdout.write(table_bytes(t, args.format).decode())
    else:
        t["ra"].info.format = ".5f"
        t["dec"].info.format = ".5f"
        t["dist_mpc"].info.format = ".1f"
        for c in ("probdensity_2d", "probdensity_3d", "score", "cumscore"):
            t[c].info.format = ".4g"
        t.pprint(max_lines=-1, max_width=-1)
        print(f"{len(t)} of {r.n_candidates} galaxies in the region ({r.mode}, catalogue {cat.name} {cat.version})")
    if r.scan:
        sc = r.scan
        print(f"read {sc['rows_read']:,} of {sc['rows_total']:,} rows: {sc['partitions_touched']} of "
              f"{sc['partitions_total']} partitions, {sc['row_groups_read']} row groups", file=sys.stderr)
    return 0
