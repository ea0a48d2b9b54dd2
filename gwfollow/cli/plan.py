"""Plan observations: time-ordered exposures a telescope at a site can execute."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow plan S190814bv.multiorder.fits --telescope ZTF --site Palomar -o plan.csv
      (24 h from the event time, single 30 s exposures, the real ZTF grid)
  gwfollow plan map.fits --telescope ZTF --site Palomar --start now --hours 10 \\
      --exposure-s 60 --visits 2 --filters g,r -o plan.xml
  gwfollow plan map.fits --telescope ZTF --site Palomar --telescope DECAM --site ctio -o joint.json
      (a joint plan: DECAM does not repeat what ZTF covers; [telescopes.DECAM] in --config)
  gwfollow plan map.fits --telescope ZTF --site Palomar --executed done.csv
      (executed pointings, columns field_id, obstime, exposure_time, are not planned again)"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("skymap", help="sky map FITS file")
    p.add_argument("--telescope", action="append", default=None,
                   help="a [telescopes.NAME] of the configuration (repeat for a joint plan; default: the first)")
    p.add_argument("--site", action="append", default=None,
                   help="site name (configured, built in such as Palomar, ctio, lapalma, siding_spring); "
                        "one per --telescope, or one for all (default: the first configured)")
    p.add_argument("--start", default=None,
                   help="start of the window: ISO 8601 UTC or 'now' (default: the map's event time)")
    p.add_argument("--hours", type=float, default=None, help="length of the window (default [plan] hours, 24)")
    p.add_argument("--exposure-s", type=float, default=None, help="exposure time, s (default [plan] exposure_s, 30)")
    p.add_argument("--visits", type=int, default=None, help="exposures per field (default 1)")
    p.add_argument("--visit-gap-min", type=float, default=None,
                   help="least time between two visits' starts, minutes (default 30)")
    p.add_argument("--filters", default=None, help="filters of the visits, comma-separated, cycled (default r)")
    p.add_argument("--strategy", choices=("coverage", "greedy"), default=None,
                   help="coverage: maximum coverage with time windows (default); greedy: best field per slot")
    p.add_argument("--max-airmass", type=float, default=None, help="airmass limit (overrides the site's)")
    p.add_argument("--executed", default=None,
                   help="CSV of executed pointings (field_id or ra/dec, obstime, exposure_time) of the first telescope")
    p.add_argument("--format", choices=("json", "csv", "votable"), default=None, help="output format")
    p.add_argument("-o", "--output", default=None, help="output file: .csv, .json or .xml (default: print)")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def window_start(text: str | None, skymap):  # type: ignore[no-untyped-def]
    """The start of a window: ``text`` (ISO 8601 UTC or ``now``), else the map's event time."""
    from astropy.time import Time

    from gwfollow.errors import PlanError

    if text is None:
        if skymap.event_t0 is None:
            raise PlanError("the sky map has no event time (DATE-OBS)", hint="give --start ISO or --start now")
        return skymap.event_t0
    if text.strip().lower() == "now":
        return Time.now()
    try:
        return Time(text, scale="utc")
    except ValueError:
        raise PlanError(f"cannot read --start {text!r}", hint="use ISO 8601 UTC, e.g. 2025-07-20T02:16:55, or now") \
            from None


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from gwfollow.config import load_config
    from gwfollow.errors import PlanError
    from gwfollow.products.report import format_for, table_bytes, write_table
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.fields import pointings_to_stmoc, telescope_from_config
    from gwfollow.targets.plan import params_from_config, plan_joint, plans_table, with_overrides
    from gwfollow.targets.sites import site_by_name

    cfg = load_config(args.config)
    if args.output:
        format_for(args.output, args.format)
    tcs = {t.name.lower(): t for t in cfg.telescopes}
    if not tcs:
        raise PlanError("no telescope configured", hint="add [telescopes.NAME] to a --config file")
    names = args.telescope or [cfg.telescopes[0].name]
    for n in names:
        if n.lower() not in tcs:
            raise PlanError(f"unknown telescope {n!r}; configured: {', '.join(t.name for t in cfg.telescopes)}",
                            hint="add [telescopes.NAME] to a --config file")
    sites = args.site or ([cfg.sites[0].name] if cfg.sites else [])
    if not sites:
        raise PlanError("no site given or configured", hint="use --site Palomar")
    if len(sites) == 1:
        sites = sites * len(names)
    if len(sites) != len(names):
        raise PlanError(f"{len(names)} --telescope but {len(sites)} --site", hint="give one --site per --telescope")
    gap = None if args.visit_gap_min is None else args.visit_gap_min * 60.0
    filters = None if args.filters is None else tuple(f.strip() for f in args.filters.split(",") if f.strip())
    pairs, params = [], []
    for n, s in zip(names, sites):
        tc = tcs[n.lower()]
        site = site_by_name(s, cfg.sites)
        if args.max_airmass is not None:
            site = dataclasses.replace(site, max_airmass=args.max_airmass)
            site.validate()
        pairs.append((telescope_from_config(tc), site))
        params.append(with_overrides(params_from_config(cfg.plan, tc.order), hours=args.hours,
                                     exposure_s=args.exposure_s, visits=args.visits, visit_gap_s=gap,
                                     filters=filters, strategy=args.strategy))
    sm = read_skymap(args.skymap, config=cfg.skymap)
    start = window_start(args.start, sm)
    covered = None
    if args.executed:
        tel = pairs[0][0]
        grid = {int(i): (float(r), float(d)) for i, r, d in zip(tel.ids, tel.ra, tel.dec)}
        covered = pointings_to_stmoc(args.executed, grid, tel.fov, order=params[0].order).space_ranges
    plans = plan_joint(sm, pairs, start, params, covered_before=covered)
    table = plans_table(plans, [t.fov for t, _ in pairs])
    total = sum(p.probability for p in plans)
    what = ", ".join(f"{p.telescope}@{p.site} {len(p)} exposure(s) {p.probability:.4f}" for p in plans)
    if args.output:
        out = write_table(table, args.output, args.format)
        print(f"{len(table)} exposure(s) cover {total:.4f} of the probability ({what}) -> {out}")
    elif args.format:
        sys.stdout.write(table_bytes(table, args.format).decode())
    else:
        for c in ("prob", "cumprob"):
            table[c].info.format = ".5f"
        table["airmass"].info.format = ".3f"
        del table["s_region"]  # the footprints are for files, not for the terminal
        table.pprint(max_lines=-1, max_width=-1)
        print(f"{len(table)} exposure(s) cover {total:.4f} of the probability ({what})")
    return 0
