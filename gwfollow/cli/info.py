"""Describe a sky map: metadata, credible areas and distance."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  gwfollow info bayestar.multiorder.fits
  gwfollow info S190425z_bayestar.fits.gz --json"""


def configure(p: argparse.ArgumentParser) -> None:
    from gwfollow.cli._common import level

    p.add_argument("skymap", help="sky map FITS file (multi-order or flat, optionally .gz)")
    p.add_argument("--level", type=level, nargs="+", default=None, metavar="L",
                   help="credible levels to report (default: skymap.levels of the config)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def summarize(path: str, levels: list[float] | None, config_path: str | None) -> dict:
    """Everything ``gwfollow info`` prints, as a dict (areas in deg²)."""
    from gwfollow.config import load_config
    from gwfollow.regions.moc import credible_ranges, probability_in_ranges, ranges_area_deg2
    from gwfollow.skymaps.skymap import read_skymap

    cfg = load_config(config_path)
    sm = read_skymap(path, config=cfg.skymap)
    lv = levels or list(cfg.skymap.levels)
    regions = []
    for L, r in zip(lv, credible_ranges(sm, lv, cfg.skymap.boundary)):
        regions.append({"level": L, "area_deg2": ranges_area_deg2(r),
                        "probability": probability_in_ranges(sm, r)})
    m = sm.meta
    return {
        "source": m.source,
        "object_id": m.object_id,
        "event_time": m.event_time,
        "instruments": list(m.instruments),
        "creator": m.creator,
        "ordering": m.ordering,
        "nside": m.nside,
        "cells": len(sm),
        "orders": [int(sm.order.min()), sm.max_order],
        "moc_order": m.moc_order,
        "probability_sum": m.prob_sum,
        "distance_mpc": {"mean": m.distmean, "std": m.diststd} if m.distmean is not None else None,
        "has_distance_layers": sm.has_distance,
        "boundary": cfg.skymap.boundary,
        "regions": regions,
        "sha256": sm.sha256,
        "warnings": list(m.warnings),
    }


def main(args: argparse.Namespace) -> int:
    from gwfollow.cli._common import emit_json

    s = summarize(args.skymap, args.level, args.config)
    if args.json:
        emit_json(s)
        return 0
    print(f"sky map      {s['source']}")
    print(f"object       {s['object_id'] or '-'}")
    print(f"event time   {s['event_time'] or '-'} UTC")
    print(f"instruments  {','.join(s['instruments']) or '-'}")
    print(f"creator      {s['creator'] or '-'}")
    flat = f" (flat NSIDE {s['nside']})" if s["nside"] else ""
    print(f"layout       {s['ordering']}{flat}: {s['cells']} cells, orders {s['orders'][0]}..{s['orders'][1]}")
    print(f"probability  sums to {s['probability_sum']:.12g}")
    d = s["distance_mpc"]
    if d:
        print(f"distance     {d['mean']:.1f} +/- {d['std']:.1f} Mpc")
    else:
        print("distance     - (no distance information)")
    for r in s["regions"]:
        print(f"{r['level'] * 100:g}% region  {r['area_deg2']:.2f} deg2 (encloses {r['probability']:.6f}, boundary {s['boundary']})")
    print(f"sha256       {s['sha256']}")
    for w in s["warnings"]:
        print(f"warning      {w}")
    return 0
