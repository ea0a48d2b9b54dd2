"""Partitioned (HATS) galaxy catalogues: import a table, describe a catalogue."""

from __future__ import annotations

import argparse
import sys
import time

EXAMPLE = """examples:
  gwfollow catalog import glade+.parquet --out glade-hats
  gwfollow catalog import galaxies.csv --out gal-hats --columns ra=RA_deg,dec=DEC_deg --max-rows 500000
  gwfollow catalog info glade-hats
  gwfollow rank bayestar.multiorder.fits --catalog glade-hats        (MOC-pruned partitions)
  gwfollow rank bayestar.multiorder.fits --catalog glade-hats --dask  (partitions on a LocalCluster)

The catalogue is written in the HATS layout, which lsdb and hats also read:
  lsdb.open_catalog("glade-hats")"""


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser("import", help="write a table (CSV, VOTable, FITS, Parquet) as a partitioned catalogue",
                         description="Write a table as a HEALPix-partitioned (HATS) catalogue.",
                         epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("table", help="the table file (CSV, VOTable, FITS, Parquet)")
    imp.add_argument("--out", required=True, help="catalogue directory to create")
    imp.add_argument("--columns", default=None, help="column roles, e.g. ra=RA_deg,dec=DEC_deg,dist=D_L")
    imp.add_argument("--name", default=None, help="catalogue name (default: the file name)")
    imp.add_argument("--max-rows", type=int, default=1_000_000,
                     help="at most this many rows per partition (default 1,000,000)")
    imp.add_argument("--lowest-order", type=int, default=0, help="coarsest partition order (default 0)")
    imp.add_argument("--histogram-order", type=int, default=8,
                     help="finest partition order; rows are counted per pixel of this order (default 8)")
    imp.add_argument("--row-group-rows", type=int, default=65_536,
                     help="Parquet row group size: the unit a search skips (default 65,536)")
    imp.add_argument("--batch-rows", type=int, default=2_000_000,
                     help="rows read at a time from the table (bounds memory; default 2,000,000)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imp.add_argument("--quiet", action="store_true", help="no progress output")
    imp.set_defaults(_action=_import)
    info = sub.add_parser("info", help="describe a partitioned catalogue",
                          description="Describe a partitioned (HATS) catalogue.",
                          epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("path", help="catalogue directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(_action=_info)


class _Progress:
    """Stage progress on stderr: one rewritten line on a terminal, a few lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last: tuple[str, float] = ("", -1.0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.t0
        text = {"count": f"counting rows per pixel: {done:,}",
                "sort": f"sorting rows by pixel: {done:,}/{total:,}",
                "write": f"writing partitions: {done}/{total}"}.get(stage, f"{stage}: {done}/{total}")
        if self.tty:
            sys.stderr.write(f"\r\x1b[2K[{now:6.1f} s] {text}")
            if total > 0 and done == total:
                sys.stderr.write("\n")
        elif stage != self.last[0] or now - self.last[1] >= 5 or (total > 0 and done == total):
            sys.stderr.write(f"[{now:6.1f} s] {text}\n")
            self.last = (stage, now)
        sys.stderr.flush()


def _import(args: argparse.Namespace) -> int:
    from gwfollow.targets.catalogues import parse_columns
    from gwfollow.targets.hats_writer import import_catalog

    s = import_catalog(args.table, args.out, columns=parse_columns(args.columns), name=args.name,
                       max_rows=args.max_rows, lowest_order=args.lowest_order,
                       histogram_order=args.histogram_order, row_group_rows=args.row_group_rows,
                       batch_rows=args.batch_rows, overwrite=args.overwrite,
                       progress=None if args.quiet else _Progress())
    orders = ", ".join(f"order {o}: {n}" for o, n in s.orders.items())
    print(f"{s.rows:,} rows in {s.partitions} partitions ({orders}; largest {s.max_partition_rows:,} rows) "
          f"-> {s.path} in {s.seconds:.1f} s")
    for note in s.notes:
        print(f"  {note}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from gwfollow.targets.partitioned import PartitionedCatalog
    from gwfollow.cli._common import emit_json

    c = PartitionedCatalog(args.path)
    orders: dict[int, int] = {}
    for q in c.partitions:
        orders[q.order] = orders.get(q.order, 0) + 1
    d = {"path": str(c.path), "name": c.name, "rows": c.nrows, "partitions": len(c.partitions),
         "orders": orders, "columns": list(c.schema.names),
         "roles": {k: v for k, v in c.roles.items() if v}, "version": c.version}
    if args.json:
        emit_json(d)
        return 0
    print(f"{d['name']}: {d['rows']:,} rows in {d['partitions']} partitions ({c.path})")
    print("  partitions per order: " + ", ".join(f"{o}: {n}" for o, n in sorted(orders.items())))
    print("  columns: " + ", ".join(d["columns"]))
    print("  roles: " + ", ".join(f"{k}={v}" for k, v in d["roles"].items()))
    return 0


def main(args: argparse.Namespace) -> int:
    return int(args._action(args) or 0)
