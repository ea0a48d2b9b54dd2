"""How much of a sky map's probability survey / catalogue coverages hold."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow coverage bayestar.multiorder.fits --moc sdss.moc.fits --moc STMoc-DECaLS-g.fits
  gwfollow coverage map.fits --mocserver CDS/P/SDSS9/r            (online, cached afterwards)
  gwfollow coverage S190425z.fits.gz --pointings ZTF_obs.csv --grid ZTF_Fields.txt --fov square:6.86
      (executed exposures as a space-time coverage: covered and remaining probability)
  gwfollow coverage map.fits --moc tmoc.fits --start 2019-04-25T08:18:05 --duration 1d --json"""


def configure(p: argparse.ArgumentParser) -> None:
    from gwfollow.cli._common import duration_seconds

    p.add_argument("skymap", help="sky map FITS file")
    p.add_argument("--moc", action="append", default=[], help="MOC 2.0 file (space, time or space-time); repeatable")
    p.add_argument("--mocserver", action="append", default=[], help="CDS MOCServer identifier; repeatable")
    p.add_argument("--pointings", default=None, help="CSV of executed exposures (field_id, obstime, exposure_time)")
    p.add_argument("--grid", default=None, help="tile grid of the pointings' telescope (ID RA Dec)")
    p.add_argument("--fov", default=None, help="field of view of the pointings: square:S, rectangle:W:H, circle:R")
    p.add_argument("--start", default=None, help="window start for time coverages (default: the event time)")
    p.add_argument("--duration", type=duration_seconds, default=86400.0, help="window length (default 1d)")
    p.add_argument("--level", type=float, default=0.9, help="credible region also reported (default 0.9)")
    p.add_argument("--offline", action="store_true", help="MOCServer: use the cache only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from gwfollow.config import load_config
    from gwfollow.regions.coverage import coverage_probability, load_coverage
    from gwfollow.errors import GwfollowError
    from gwfollow.targets.fields import pointings_to_stmoc
    from gwfollow.regions.moc import credible_ranges
    from gwfollow.regions.mocserver import coverage_from_mocserver
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.cli._common import emit_json

    cfg = load_config(args.config)
    covs = [load_coverage(m) for m in args.moc]
    covs += [coverage_from_mocserver(i, os.path.expanduser(cfg.coverage_cache), offline=args.offline)
             for i in args.mocserver]
    if args.pointings:
        if not (args.grid and args.fov):
            raise GwfollowError("--pointings needs --grid and --fov", hint="e.g. --grid ZTF_Fields.txt --fov square:6.86")
        from gwfollow.cli.fields import parse_fov

        covs.append(pointings_to_stmoc(args.pointings, args.grid, parse_fov(args.fov)))
    if not covs:
        raise GwfollowError("no coverage given", hint="use --moc FILE, --mocserver ID or --pointings CSV")
    sm = read_skymap(args.skymap, config=cfg.skymap)
    from astropy.time import Time

    start = Time(args.start, scale="utc") if args.start else sm.event_t0
    from astropy import units as u

    end = None if start is None else start + args.duration * u.s
    region = credible_ranges(sm, [args.level], "include")[0]
    rows = []
    for c in covs:
        r = coverage_probability(sm, c, start, end, region=region, duration_s=args.duration)
        d = dataclasses.asdict(r)
        if r.probability is not None:
            d["remaining_probability"] = max(0.0, sm.meta.prob_sum - r.probability)
        rows.append(d)
    if args.json:
        emit_json({"skymap": sm.meta.source, "level": args.level, "coverages": rows})
        return 0
    for d in rows:
        if d["probability"] is None:
            print(f"{d['name']} ({d['kind']}): observing {100 * d['time_fraction']:.1f}% of "
                  f"{d['start']} .. {d['end']}")
            continue
        extra = f", {100 * d['time_fraction']:.1f}% of the window" if d["time_fraction"] is not None else ""
        print(f"{d['name']} ({d['kind']}): probability {d['probability']:.4f} covered "
              f"(remaining {d['remaining_probability']:.4f}); {d['area_deg2']:.1f} deg2 of the "
              f"{args.level:g} region ({d['region_probability']:.4f}){extra}")
    return 0
