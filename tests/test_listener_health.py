"""The spool survives any file name and uses failed/; /health reports each listener's real state."""

from __future__ import annotations

import asyncio
import os
import socket
import time

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
