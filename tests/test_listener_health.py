"""The spool survives any file name and uses failed/; /health reports each listener's real state."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

from gwfollow.config import Config, packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.app import STORE

from .conftest import shared_path


def _cfg(tmp_path, **over) -> Config:
    return packaged_defaults().updated(store=dict(path=str(tmp_path / "l.sqlite")), service=dict(workers=1),
                                       **over)


async def _until(cond, timeout=60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


async def test_spool_takes_any_file_name_and_moves_bad_files_to_failed(tmp_path, aiohttp_client) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = _cfg(tmp_path, spool=dict(enabled=True, directory=str(spool), poll_s=0.05))
    client = await aiohttp_client(make_app(cfg))
    store = client.app[STORE]
    d = os.fsencode(spool)
    with open(d + b"/bad-\xff\r\n.json", "wb") as f:  # not UTF-8, with CR LF
        f.write(shared_path("alerts", "MS181101ab-preliminary.json").read_bytes())
    (spool / "garbage.json").write_bytes(b'{"not": "an alert"}')
    await _until(lambda: _done(spool, 1))
    (spool / "later.json").write_bytes(shared_path("alerts", "S241102br-preliminary.json").read_bytes())
    await _until(lambda: _done(spool, 2))
    assert sorted(os.listdir(os.fsencode(spool / "done"))) == [b"bad-\xff\r\n.json", b"later.json"]
    assert os.listdir(spool / "failed") == ["garbage.json"]
    sources = {r[0] for r in store.query("SELECT source FROM raw_messages")}
    assert "spool:bad-\\xff\r\n.json" in sources and "spool:garbage.json" in sources
    assert len(store.dead_letters()) == 1
    health = await (await client.get("/api/v1/health")).json()
    (spool_h,) = health["listeners"]
    assert spool_h["state"] == "ok" and spool_h["intake_errors"] == 1 and "garbage.json" in spool_h["last_error"]
    assert health["status"] == "ok" and health["intake"]["listener_errors"] == 1


async def _done(spool, n):
    return (spool / "done").is_dir() and len(os.listdir(spool / "done")) >= n


async def test_health_is_failing_while_kafka_cannot_connect(tmp_path, aiohttp_client) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kafka = dict(enabled=True, bootstrap=f"127.0.0.1:{port}", security_protocol="PLAINTEXT")
    client = await aiohttp_client(make_app(_cfg(tmp_path, kafka=kafka)))

    async def failing():
        r = await client.get("/api/v1/health")
        return r.status == 503 and (await r.json())["status"] == "failing"

    await _until(failing, 60)
    body = await (await client.get("/api/v1/health")).json()
    (k,) = body["listeners"]
    assert k["kind"] == "KafkaListener" and k["state"] == "failing" and k["connected"] is False
    assert k["last_error"]


async def test_kafka_intake_errors_are_counted_and_make_the_listener_degraded(kafka_broker, tmp_path,
                                                                               aiohttp_client) -> None:
    """With the real broker: messages that end as dead letters and a message the store refuses are
    intake errors of the Kafka listener, in /health and /metrics; past the threshold it is degraded."""
    from aiokafka import AIOKafkaProducer

    from .kafka_broker import FAST_GROUP_SETTINGS

    topic = f"t-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    kafka = dict(enabled=True, bootstrap=kafka_broker.bootstrap, topics=(topic,), group_id=f"g-{topic}",
                 auto_offset_reset="earliest", security_protocol="PLAINTEXT", **FAST_GROUP_SETTINGS)
    cfg = packaged_defaults().updated(
        telescopes=(), sites=(), store=dict(path=str(tmp_path / "k.sqlite")), kafka=kafka,
        service=dict(workers=1, degraded_intake_errors=3, degraded_window_s=600.0))
    client = await aiohttp_client(make_app(cfg))
    store = client.app[STORE]
    prod = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await prod.start()

    async def kafka_health():
        (k,) = (await (await client.get("/api/v1/health")).json())["listeners"]
        return k

    try:
        good = shared_path("alerts", "S241126dm-retraction.json").read_bytes()
        for body in (b"not an alert at all", b'{"alert_type": "PRELIMINARY", "time_cr', good):
            await prod.send_and_wait(topic, body)

        async def two_errors():
            return (await kafka_health())["intake_errors"] == 2 and store.alerts_of("S241126dm")

        await _until(two_errors, 90)
        k = await kafka_health()
        assert k["state"] == "ok" and k["recent_intake_errors"] == 2 and "kafka:" in k["last_error"]

        # The store refuses the next message: an intake error, and the message is not lost.
        store.query("CREATE TRIGGER refuse BEFORE INSERT ON raw_messages WHEN NEW.source LIKE 'kafka:%' "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        later = good.replace(b"S241126dm", b"S241127aa")
        await prod.send_and_wait(topic, later)

        async def degraded():
            return (await kafka_health())["state"] == "degraded"

        await _until(degraded, 60)
        r = await client.get("/api/v1/health")
        body = await r.json()
        assert r.status == 200 and body["status"] == "degraded" and body["intake"]["listener_errors"] >= 3
        assert "disk full" in body["listeners"][0]["last_error"]
        metrics = await (await client.get("/metrics")).text()
        n = int(next(line for line in metrics.splitlines()
                     if line.startswith('gwfollow_listener_intake_errors_total{listener="KafkaListener"')).split()[-1])
        assert n >= 3
        assert 'gwfollow_listener_state{listener="KafkaListener",index="0",state="degraded"} 1' in metrics
        store.query("DROP TRIGGER refuse")

        async def stored_after_all():
            return bool(store.alerts_of("S241127aa"))

        await _until(stored_after_all, 90)  # consumed again after the reconnection
    finally:
        await prod.stop()
