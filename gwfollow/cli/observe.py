"""When a sky map can be observed from a site: probability per time slice."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  gwfollow observe bayestar.multiorder.fits --site Palomar
      (a site of the configuration; the window starts at the event time)
  gwfollow observe map.fits --site palomar --hours 12 --step 10 --start 2019-08-14T21:10:39
      (also the built-in sites palomar, ctio, lapalma, siding_spring)
  gwfollow observe map.fits --site Palomar -o palomar.stmoc.fits --json"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("skymap", help="sky map FITS file")
    p.add_argument("--site", default=None, help="configured or built-in site (default: the first configured)")
    p.add_argument("--hours", type=float, default=None, help="length of the window (default: the site's, 24)")
    p.add_argument("--step", type=float, default=None, help="slice length in minutes (default: the site's, 15)")
    p.add_argument("--start", default=None, help="window start, ISO UTC (default: the event time)")
    p.add_argument("-o", "--output", default=None, help="write the observable sky as a space-time MOC (FITS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def main(args: argparse.Namespace) -> int:
    import dataclasses

    from gwfollow.cli._common import emit_json
    from gwfollow.config import SiteConfig, load_config, named_config
    from gwfollow.regions.moc import credible_ranges, write_moc
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.targets.observability import (
        KNOWN_SITES,
        ObservabilityError,
        observability,
    )
    from gwfollow.targets.windows import site_of, site_summary

    cfg = load_config(args.config)
    sites = {s.name: s for s in cfg.sites}
    name = args.site or (next(iter(sites)) if sites else "palomar")
    if name in sites:
        sc = sites[name]
    elif name in KNOWN_SITES:
        k = KNOWN_SITES[name]
        sc = named_config(SiteConfig, k.name, lat_deg=k.lat_deg, lon_deg=k.lon_deg, height_m=k.height_m)
    else:
        raise ObservabilityError(f"unknown site {name!r}",
                                 hint=f"configured: {', '.join(sites) or '-'}; built in: {', '.join(KNOWN_SITES)}")
    sc = dataclasses.replace(sc, hours=args.hours or sc.hours, step_minutes=args.step or sc.step_minutes)
    sm = read_skymap(args.skymap, config=cfg.skymap)
    from astropy.time import Time

    start = Time(args.start, scale="utc") if args.start else sm.event_t0
    if start is None:
        raise ObservabilityError("the sky map has no event time", hint="give --start")
    region = credible_ranges(sm, [0.9], "include")[0]
    s = site_summary(sm, sc, start, region)
    if args.output:
        res = observability(sm, site_of(sc), start, hours=sc.hours, step_minutes=sc.step_minutes)
        write_moc(res.stmoc(), args.output)
    if args.json:
        emit_json(s)
        return 0
    print(f"site {sc.name}: airmass <= {sc.max_airmass:g}, Sun below {sc.max_sun_alt_deg:g} deg; "
          f"{sc.hours:g} h from {s['start']} in {sc.step_minutes:g}-min slices")
    width = 40
    for sl in s["slices"]:
        bar = "#" * int(round(width * sl["probability"]))
        print(f"  {sl['start']}  sun {sl['sun_alt_deg']:6.1f}  P {sl['probability']:.3f} {bar}")
    print(f"observable at some time: {s['total_observable_probability']:.3f} of the probability "
          f"({s['total_in_region']:.3f} inside the 90% region)")
    if s["best_slice"]:
        print(f"best slice: {s['best_slice']['start']} with {s['best_slice']['probability']:.3f}")
    if args.output:
        print(f"space-time MOC of the observable sky -> {args.output}")
    return 0
