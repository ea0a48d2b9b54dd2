"""Write credible-region MOCs (or space-time MOCs) of a sky map."""

from __future__ import annotations

import argparse
from typing import Any

EXAMPLE = """examples:
  gwfollow moc bayestar.multiorder.fits --level 0.5 0.9 -o region.fits
      writes region-0.5.fits and region-0.9.fits (IVOA MOC 2.0)
  gwfollow moc bayestar.multiorder.fits --level 90% -o region.json
  gwfollow moc bayestar.multiorder.fits --level 0.9 --duration 1d -o window.fits
      writes a space-time MOC of the region over [event time, +1 day]"""


def configure(p: argparse.ArgumentParser) -> None:
    from gwfollow.cli._common import duration_seconds, level

    p.add_argument("skymap", help="sky map FITS file (multi-order or flat, optionally .gz)")
    p.add_argument("--level", type=level, nargs="+", default=None, metavar="L",
                   help="credible levels, e.g. 0.5 0.9 or 90%% (default: skymap.levels of the config)")
    p.add_argument("--boundary", choices=("split", "exclude", "include"), default=None,
                   help="treatment of the cell crossing the level (default: skymap.boundary, 'split' = mocpy's rule)")
    p.add_argument("--duration", type=duration_seconds, default=None,
                   help="write a space-time MOC over [event time, + duration], e.g. 1d, 6h, 3600s")
    p.add_argument("--start", default=None, help="start of the time window (ISO UTC; default: event time)")
    p.add_argument("-o", "--output", required=True,
                   help="output file; .fits, .json or .txt (ASCII) selects the format; with several "
                   "levels the level goes before the extension (region-0.9.fits)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--config", help="configuration file overriding config/default.toml")


def _window_start(text: str | None, sm: Any) -> Any:
    """The space-time MOC's start: ``--start`` (ISO UTC) or the sky map's event time."""
    from astropy.time import Time

    from gwfollow.errors import MocError

    if text is None:
        t0 = sm.event_t0
        if t0 is None:
            raise MocError(f"{sm.meta.source}: no event time (DATE-OBS / MJD-OBS) in the sky map",
                           hint="give --start 2019-04-25T08:18:05")
        return t0
    try:
        return Time(text, scale="utc")
    except ValueError as exc:
        raise MocError(f"cannot read --start {text!r} ({exc})", hint="use ISO 8601 UTC, e.g. 2019-04-25T08:18:05") \
            from None


def main(args: argparse.Namespace) -> int:
    from gwfollow.config import load_config
    from gwfollow.kernels import ranges as kr
    from gwfollow.regions.moc import (
        credible_ranges, moc_format_for, moc_from_ranges, path_for_level,
        probability_in_ranges, ranges_area_deg2, write_moc,
    )
    from gwfollow.regions.mocio import convert_space_moc, credible_moc_fits_bytes
    from gwfollow.skymaps.skymap import read_skymap
    from gwfollow.version import __version__
    from gwfollow.cli._common import emit_json

    cfg = load_config(args.config)
    moc_format_for(args.output)  # fail early on a bad extension
    levels = args.level or list(cfg.skymap.levels)
    boundary = args.boundary or cfg.skymap.boundary
    sm = read_skymap(args.skymap, config=cfg.skymap)
    start = None
    if args.duration is not None:
        start = _window_start(args.start, sm)
    rows = []
    for L, r in zip(levels, credible_ranges(sm, levels, boundary)):
        out = path_for_level(args.output, L, len(levels) > 1)
        fits_bytes = credible_moc_fits_bytes(r, sm.meta.moc_order, object_id=sm.meta.object_id, level=L,
                                             boundary=boundary, skymap_sha256=sm.sha256, version=__version__)
        if args.duration is not None:
            # The same bytes as GET /events/{id}/moc?duration=: provenance and the time window in the header.
            out.write_bytes(convert_space_moc(fits_bytes, moc_format_for(out), start, args.duration,
                                              cfg.moc.stmoc_time_order))
        elif moc_format_for(out) == "fits":
            # The same bytes as the pipeline's stored product (GET /events/{id}/moc).
            out.write_bytes(fits_bytes)
        else:
            write_moc(moc_from_ranges(r, sm.meta.moc_order), out)
        cells = kr.to_uniq(r)
        deepest = _deepest_order(cells)
        rows.append({
            "level": L,
            "area_deg2": ranges_area_deg2(r),
            "probability": probability_in_ranges(sm, r),
            "cells": int(cells.shape[0]),
            "max_order": deepest,
            "output": str(out),
            "duration_s": args.duration,
        })
    if args.json:
        emit_json({"source": sm.meta.source, "object_id": sm.meta.object_id, "boundary": boundary, "mocs": rows})
    else:
        for row in rows:
            kind = f" x {row['duration_s']:g} s" if row["duration_s"] else ""
            print(f"level {row['level']:g}: {row['area_deg2']:.3f} deg2{kind}, probability "
                  f"{row['probability']:.6f}, {row['cells']} cells, max order {row['max_order']} -> {row['output']}")
    return 0


def _deepest_order(cells) -> int:
    from gwfollow.kernels import healpix as khp

    if cells.shape[0] == 0:
        return 0
    order, _ = khp.uniq_to_order_ipix(cells)
    return int(order.max())
