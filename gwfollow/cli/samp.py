"""Send a sky map's or a stored event's products to TOPCAT and Aladin over SAMP."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  gwfollow samp bayestar.multiorder.fits --level 0.9 --catalog openngc --telescope ZTF
      sends the 90 % MOC (coverage.load.moc.fits), the ranked galaxies and ZTF fields
      (table.load.votable) and the sky map (image.load.fits) to the running hub's clients
  gwfollow samp --event S241102br --db gwfollow.sqlite
      the stored products of an event's latest sky map
  gwfollow samp map.fits --serve 60
      serve the files over HTTP on 127.0.0.1 for 60 s (clients that do not read file:// URLs)
start TOPCAT or Aladin first: each runs a SAMP hub."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("skymap", nargs="?", help="sky map FITS file (or use --event and --db)")
    p.add_argument("--event", help="superevent id of a stored event (with --db)")
    p.add_argument("--db", help="the service's SQLite database (with --event)")
    p.add_argument("--level", type=float, default=0.9, help="credible level of the MOC (default 0.9)")
    p.add_argument("--catalog", action="append", default=None,
                   help="catalogue to rank (repeatable; default openngc); with a sky map only")
    p.add_argument("--telescope", action="append", default=None,
                   help="configured telescope whose fields to rank (repeatable); with a sky map only")
    p.add_argument("--limit", type=int, default=100, help="galaxies per table (default 100)")
    p.add_argument("--dir", default=None, help="directory for the files sent (default: a new temporary one)")
    p.add_argument("--serve", type=float, default=0.0, metavar="SECONDS",
                   help="serve the files over HTTP on 127.0.0.1 for this long and send http:// URLs")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long each client may take to load a file and reply (default 30)")
    p.add_argument("--json", action="store_true", help="print the messages sent as JSON")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    from gwfollow.cli._common import emit_json
    from gwfollow.config import load_config
    from gwfollow.errors import SampError
    from gwfollow.products.samp import products_from_skymap, products_from_store, send_products
    from gwfollow.store import Store

    cfg = load_config(args.config)
    if args.event or args.db:
        if not (args.event and args.db) or args.skymap:
            raise SampError("give either a sky map, or --event ID with --db FILE",
                            hint="gwfollow samp --event S241102br --db gwfollow.sqlite")
        if not Path(args.db).is_file():
            raise SampError(f"no database {args.db!r}", hint="give the service's store.path file")
        store = Store(args.db)
        try:
            products = products_from_store(store, args.event, level=args.level)
        finally:
            store.close()
    elif args.skymap:
        products = products_from_skymap(args.skymap, cfg, level=args.level, catalogs=args.catalog or ["openngc"],
                                        telescopes=args.telescope or [], limit=args.limit)
    else:
        raise SampError("nothing to send", hint="give a sky map file, or --event ID --db FILE")
    sent = send_products(products, directory=args.dir, serve_seconds=args.serve, reply_seconds=args.wait)
    if args.json:
        emit_json(sent)
    else:
        for m in sent:
            to = ", ".join(f"{rid} {m['names'].get(rid) or '?'} ("
                           + (f"as {m['as'][rid]}: " if rid in m["as"] else "") + f"{m['replies'][rid]})"
                           for rid in m["recipients"]) or "no subscribed client"
            print(f"{m['samp.mtype']:<24} {m['samp.params']['name']} -> {to}")
        print(f"files in {sent[0]['file'].rsplit('/', 1)[0]}" if sent else "nothing sent")
    return 0
