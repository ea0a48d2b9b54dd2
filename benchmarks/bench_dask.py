"""Replay benchmark: sequential pipeline vs a Dask LocalCluster (2 worker processes).

Events are generated from the real multi-order sky maps of ../shared/data:
each copy is rotated by a multiple of 90 deg in right ascension (an exact
relabelling of the HEALPix base cells, so the map stays a valid NUNIQ map)
and its densities perturbed by a few per cent (then renormalised); each
becomes a PRELIMINARY IGWN alert of its own superevent.  Both runs process
the same messages into fresh databases; the script prints events/s, the
speed-up and checks that the products are identical.

Usage: ``python benchmarks/bench_dask.py [--events 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def rotated(uniq: np.ndarray, k: int) -> np.ndarray:
    """Rotate NUNIQ cells by k x 90 deg about the polar axis (base cell relabelling)."""
    order = (np.floor(np.log2(uniq // 4) / 2)).astype(np.int64)
    ipix = uniq - 4 * 4**order
    nface = 4**order
    face, sub = ipix // nface, ipix % nface
    face = (face // 4) * 4 + (face % 4 + k) % 4
    return 4 * 4**order + face * nface + sub


def make_events(n: int) -> list[tuple[bytes, str]]:
    from astropy.table import Table
    from ligo.skymap.io.fits import write_sky_map

    from gwfollow.skymaps.simulate import simulated_alert_json

    maps = sorted((SHARED / "skymaps").glob("*.multiorder.fits"))
    rng = np.random.default_rng(0)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t = Table.read(maps[i % len(maps)])
            t["UNIQ"] = rotated(np.asarray(t["UNIQ"], dtype=np.int64), i % 4)
            order = (np.floor(np.log2(np.asarray(t["UNIQ"]) // 4) / 2)).astype(int)
            dens = np.asarray(t["PROBDENSITY"], float) * (1 + 0.05 * rng.standard_normal(len(t))).clip(0.5)
            dens /= (dens * 4 * np.pi / (12 * 4.0**order)).sum()
            t["PROBDENSITY"] = dens
            p = Path(tmp) / f"m{i}.fits"
            write_sky_map(str(p), t, moc=True)
            sid = f"MS{i:06d}bench"
            out.append((simulated_alert_json(p.read_bytes(), superevent_id=sid,
                                             time_created=f"2025-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:"
                                             f"{i % 60:02d}Z"), f"{sid}.json"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2
    from gwfollow.config import load_config
    from gwfollow.pipeline.distributed import replay_on_dask
    from gwfollow.pipeline.replay import order_messages, replay_messages
    from gwfollow.products.summary import event_summary
    from gwfollow.store import Store

    t = time.perf_counter()
    items = make_events(args.events)
    print(f"generated {len(items)} events from the real maps in {time.perf_counter() - t:.1f} s", flush=True)
    msgs = order_messages(items)
    cfg = load_config(env={})
    with tempfile.TemporaryDirectory() as tmp:
        seq = Store(Path(tmp) / "seq.sqlite")
        t = time.perf_counter()
        asyncio.run(replay_messages(msgs, cfg, seq))
        t_seq = time.perf_counter() - t
        print(f"sequential pipeline (2 worker processes, one event at a time): {len(msgs) / t_seq:6.2f} events/s",
              flush=True)
        dsk = Store(Path(tmp) / "dask.sqlite")
        t = time.perf_counter()
        replay_on_dask(msgs, cfg, dsk, n_workers=2)
        t_dask = time.perf_counter() - t
        print(f"Dask LocalCluster, 2 worker processes:                          {len(msgs) / t_dask:6.2f} events/s "
              f"(speed-up {t_seq / t_dask:.2f}x, cluster start included)")
        same = all(event_summary(seq, e.superevent_id, cfg) == event_summary(dsk, e.superevent_id, cfg)
                   for e in seq.events())
        print(f"identical products: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
