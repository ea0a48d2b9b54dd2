"""The GCN Kafka listener against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gwfollow.config import (
    Config,
    packaged_defaults,
)
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.products.summary import event_summary
from gwfollow.service import make_app
from gwfollow.service.app import STORE
from gwfollow.store import Store

from .conftest import shared_files
from .kafka_broker import FAST_GROUP_SETTINGS, free_port

ALERTS = shared_files("alerts", "*.json")
pytestmark = pytest.mark.shared_data


def _config(broker, topic: str, db: Path, port: int = 0) -> Config:
    return packaged_defaults().updated(
        telescopes=(), sites=(),  # no telescope or site products: these tests are about intake
        store=dict(path=str(db)),
        service=dict(port=port, workers=1, queue_size=4),
        kafka=dict(enabled=True, bootstrap=broker.bootstrap, topics=(topic,),
                   group_id=f"g-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                   security_protocol="PLAINTEXT", **FAST_GROUP_SETTINGS),
    )


async def _produce(bootstrap: str, topic: str, bodies: list[bytes], delay: float = 0.0) -> None:
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 2**20)
    await prod.start()
    try:
        for b in bodies:
            await prod.send_and_wait(topic, b)
            if delay:
                await asyncio.sleep(delay)
    finally:
        await prod.stop()


async def _wait_settled(store: Store, n: int, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c = store.query("SELECT COUNT(*) FROM raw_messages WHERE status != 'pending'")[0][0]
        if c >= n:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {c} of {n} messages settled: {store.counts()}")


async def test_alerts_through_kafka_equal_replay(kafka_broker, tmp_path, aiohttp_client) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    files = [p for p in ALERTS]
    bodies = [p.read_bytes() for p in files]
    malformed = [b'{"alert_type": "PRELIMINARY", "time_cr', b"not an alert at all",
                 next(b for b in bodies if b'"PRELIMINARY"' in b).replace(b'"PRELIMINARY"', b'"BOGUS"')]
    # Produce in time-created order, as GCN does, with malformed messages mixed in.
    ordered = [m.body for m in order_messages([(b, str(p)) for b, p in zip(bodies, files)])]
    stream = ordered[:3] + malformed + ordered[3:]
    await _produce(kafka_broker.bootstrap, topic, stream)

    cfg = _config(kafka_broker, topic, tmp_path / "serve.sqlite")
    client = await aiohttp_client(make_app(cfg))
    store = client.app[STORE]
    await _wait_settled(store, len(stream))
    dead = store.dead_letters()
    assert len(dead) == len(malformed)  # the retraction of the never-seen S241126dm is recorded (issue 13)
    health = await (await client.get("/api/v1/health")).json()
    # three dead letters within service.degraded_window_s reach service.degraded_intake_errors (3)
    assert health["status"] == "degraded" and health["store"]["raw_messages"] == len(stream)
    (k,) = health["listeners"]
    assert k["state"] == "degraded" and k["intake_errors"] == len(malformed) and k["connected"]

    # The same files replayed give the same products.
    rstore = Store(tmp_path / "replay.sqlite")
    await replay_messages(order_messages([(b, str(p)) for b, p in zip(bodies, files)]), cfg, rstore)
    for ev in rstore.events():
        sid = ev.superevent_id
        assert event_summary(store, sid, cfg) == event_summary(rstore, sid, cfg)
        a = {(p["level"], p["area_deg2"]) for p in store.products_of(sid)}
        b = {(p["level"], p["area_deg2"]) for p in rstore.products_of(sid)}
        assert a == b
        for pa, pb in zip(store.products_of(sid), rstore.products_of(sid)):
            assert store.product_data(pa["id"]) == rstore.product_data(pb["id"])
    assert {e.superevent_id for e in store.events()} == {e.superevent_id for e in rstore.events()}
    assert store.event("MS181101ab").state == "retracted"


def _serve(cfg_path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gwfollow.cli.main", "serve", "--config", str(cfg_path)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _toml(cfg: Config) -> str:
    k = cfg.kafka
    return f"""
[store]
path = "{cfg.store.path}"
[service]
port = {cfg.service.port}
workers = 1
queue_size = 4
[kafka]
enabled = true
bootstrap = "{k.bootstrap}"
topics = ["{k.topics[0]}"]
group_id = "{k.group_id}"
auto_offset_reset = "earliest"
security_protocol = "PLAINTEXT"
session_timeout_ms = {k.session_timeout_ms}
heartbeat_interval_ms = {k.heartbeat_interval_ms}
"""


def test_sigkill_while_streaming_loses_nothing(kafka_broker, tmp_path) -> None:
    topic = f"k-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    db = tmp_path / "kill.sqlite"
    cfg = _config(kafka_broker, topic, db, port=free_port())
    cfg_path = tmp_path / "site.toml"
    cfg_path.write_text(_toml(cfg))
    log = tmp_path / "serve.log"
    bodies = [p.read_bytes() for p in ALERTS]
    proc = _serve(cfg_path, log)
    try:
        producer = subprocess.Popen(
            [sys.executable, "-c",
             "import asyncio, sys, pathlib\n"
             "from aiokafka import AIOKafkaProducer\n"
             "async def main():\n"
             f"    p = AIOKafkaProducer(bootstrap_servers='{kafka_broker.bootstrap}', acks='all', max_request_size=8*2**20)\n"
             "    await p.start()\n"
             f"    for f in {[str(p) for p in ALERTS]!r}:\n"
             f"        await p.send_and_wait('{topic}', pathlib.Path(f).read_bytes())\n"
             "        await asyncio.sleep(0.3)\n"
             "    await p.stop()\n"
             "asyncio.run(main())\n"])
        # Kill the service as soon as some alerts are stored, while more stream in.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            if db.exists():
                s = Store(db)
                n = s.counts()["raw_messages"]
                s.close()
                if n >= 3:
                    break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert producer.wait(60) == 0
        proc = _serve(cfg_path, log)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            s = Store(db)
            total = s.counts()["raw_messages"]
            pending = len(s.pending_raw_ids())
            s.close()
            if total == len(bodies) and pending == 0:
                break
            time.sleep(0.3)
    finally:
        with_pid = proc.pid
        try:
            os.killpg(with_pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(with_pid, signal.SIGKILL)
    s = Store(db)
    rows = s.query("SELECT content_hash, status FROM raw_messages")
    import hashlib

    expected = {hashlib.sha256(b).hexdigest() for b in bodies}
    assert {r[0] for r in rows} == expected, log.read_text()[-3000:]
    assert len(rows) == len(expected)  # each stored exactly once
    assert all(r[1] in ("processed", "ignored", "dead") for r in rows)
    alerts = s.query("SELECT superevent_id, alert_type, time_created, content_hash FROM alerts")
    assert len(alerts) == len(set(alerts)) == len(bodies)  # the unseen retraction is recorded too
    assert s.counts()["products"] > 0
