"""Rank a telescope's fields by enclosed probability for a sky map."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow fields bayestar.multiorder.fits --telescope ZTF
      (the telescope from the configuration: [telescopes.ZTF])
  gwfollow fields map.fits --grid ZTF_Fields.txt --fov square:6.86 --target 0.9 -o fields.xml
  gwfollow fields map.fits --grid ULTRASAT_grid.csv --fov circle:7 --format csv
  gwfollow fields S250720j.multiorder.fits --telescope ZTF --site Palomar
      (only fields Palomar can observe in the [plan] window from the event time,
       with their observable windows; --start now to plan from now)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("skymap", help="sky map FITS file")
    p.add_argument("--telescope", default=None, help="a telescope of the configuration (default: the first)")
    p.add_argument("--grid", default=None, help="tile grid file (ID RA Dec), instead of a configured telescope")
    p.add_argument("--fov", default=None,
                   help="field of view with --grid: square:SIDE, rectangle:W:H or circle:RADIUS (degrees)")
    p.add_argument("--target", type=float, default=None, help="cumulative probability to reach (default 0.9)")
    p.add_argument("--limit", type=int, default=30, help="fields to list (default 30; 0 = all candidates)")
    p.add_argument("--site", action="append", default=None,
                   help="rank only fields observable from this site (repeatable; configured or built in)")
    p.add_argument("--start", default=None,
                   help="with --site: start of the window, ISO 8601 UTC or 'now' (default: the map's event time)")
    p.add_argument("--format", choices=("json", "csv", "votable"), default=None, help="output format")
    p.add_argument("-o", "--output", default=None, help="output file (default: print a table)")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def parse_fov(text: str):
    """``square:6.86``, ``rectangle:3:2``, ``circle:7`` -> FieldOfView."""
    from gwfollow.targets.fields import FieldOfView, FieldsError

    parts = text.split(":")
    try:
        if parts[0] == "square" and len(parts) == 2:
            return FieldOfView.square(float(parts[1]))
        if parts[0] == "rectangle" and len(parts) == 3:
            return FieldOfView.rectangle(float(parts[1]), float(parts[2]))
        if parts[0] == "circle" and len(parts) == 2:
            return FieldOfView.circle(float(parts[1]))
    except ValueError:
        pass
    raise FieldsError(f"cannot read field of view {text!r}", hint="use square:SIDE, rectangle:W:H or circle:R (deg)")


def main(args: argparse.Namespace) -> int:
    import sys

    from gwfollow.config import load_config
    from gwfollow.targets.fields import FieldsError, Telescope, rank_fields, telescope_from_config
    from gwfollow.products.report import format_for, table_bytes, write_table
    from gwfollow.skymaps.skymap import read_skymap

    cfg = load_config(args.config)
    if args.output:
        format_for(args.output, args.format)
    target = args.target
    if args.grid:
        if not args.fov:
            raise FieldsError("--grid needs --fov", hint="e.g. --fov square:6.86")
        tel = Telescope.from_file(args.telescope or "telescope", args.grid, parse_fov(args.fov))
        order = 10
    else:
        tcs = {t.name: t for t in cfg.telescopes}
        if not tcs:
            raise FieldsError("no telescope configured", hint="add [telescopes.NAME] or use --grid/--fov")
        name = args.telescope or next(iter(tcs))
        if name not in tcs:
            raise FieldsError(f"unknown telescope {name!r}; configured: {', '.join(tcs)}")
        tel = telescope_from_config(tcs[name])
        target = target if target is not None else tcs[name].target
        order = tcs[name].order
    sm = read_skymap(args.skymap, config=cfg.skymap)
    if args.site:
        from gwfollow.cli.plan import window_start
        from gwfollow.targets.observable_fields import rank_observable_fields
        from gwfollow.targets.plan import params_from_config
        from gwfollow.targets.sites import site_by_name

        sites = [site_by_name(s, cfg.sites) for s in args.site]
        o = rank_observable_fields(sm, tel, sites, window_start(args.start, sm), params_from_config(cfg.plan, order),
                                   target=target if target is not None else 0.9, max_fields=args.limit or None)
        r, t = o.ranked, o.table()
    else:
        r = rank_fields(sm, tel, target=target if target is not None else 0.9, order=order,
                        max_fields=args.limit or None)
        t = r.table()
    if sm.meta.object_id:
        t.meta.setdefault("alert_id", sm.meta.object_id)  # provenance in the VOTable
    if args.output:
        out = write_table(t, args.output, args.format)
        print(f"{int(r.selected.sum())} field(s) reach {r.cumprob[r.selected][-1] if r.selected.any() else 0:.3f} "
              f"of the probability ({r.n_candidates} candidates, {tel.name}) -> {out}")
    elif args.format:
        sys.stdout.write(table_bytes(t, args.format).decode())
    else:
        for c in ("prob", "marginal_prob", "cumprob"):
            t[c].info.format = ".4f"
        t["ra"].info.format = ".4f"
        t["dec"].info.format = ".4f"
        t.pprint(max_lines=-1, max_width=-1)
        print(f"{int(r.selected.sum())} field(s) selected to reach {r.target:g} ({r.n_candidates} candidate fields "
              f"of {len(tel)}, telescope {tel.name})")
    return 0
