"""HTTP details of issue 13: conditional requests, auth challenges, bounds, slow bodies, one-line CLI errors."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from gwfollow.cli.main import main as cli_main
from gwfollow.config import Config, packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.auth import token_digest

from .conftest import shared_path

WRITE, READ = "write-secret", "read-secret"


def _cfg(tmp_path, **svc) -> Config:
    service = dict(workers=1, write_tokens_sha256=(token_digest(WRITE),),
                            read_tokens_sha256=(token_digest(READ),), **svc)
    return packaged_defaults().updated(store=dict(path=str(tmp_path / "h.sqlite")), service=service)


@pytest.fixture(scope="module")
def event_db(tmp_path_factory):
    from gwfollow.pipeline.replay import order_messages, replay_messages
    from gwfollow.store import Store

    d = tmp_path_factory.mktemp("http")
    cfg = _cfg(d)
    store = Store(cfg.store.path)
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    asyncio.run(replay_messages(order_messages([(body, "p.json")]), cfg, store))
    store.close()
    return d


async def test_weak_etags_give_304(event_db, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(event_db)))
    for path in ("/api/v1/events", "/api/v1/events/S241102br", "/api/v1/events/S241102br/moc?level=0.9"):
        r = await client.get(path)
        tag = r.headers["ETag"]
        assert (await client.get(path, headers={"If-None-Match": f"W/{tag}"})).status == 304, path
        assert (await client.get(path, headers={"If-None-Match": f'"other", W/{tag}'})).status == 304
        assert (await client.get(path, headers={"If-None-Match": 'W/"other"'})).status == 200


async def test_moc_duration_out_of_range_is_400(event_db, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(event_db)))
    for bad in ("1e999", "1e999d", "inf", "1e30"):
        r = await client.get(f"/api/v1/events/S241102br/moc?level=0.9&duration={bad}")
        assert r.status == 400 and (await r.json())["parameter"] == "duration", bad


async def test_auth_challenges_and_scopes(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path, read_open=False)))
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    r = await client.post("/api/v1/alerts", data=body)
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="gwfollow"'
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": "Bearer nobody"})
    assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {READ}"})
    assert r.status == 403
    for path in ("/api/v1/events", "/metrics", "/api/v1/openapi.json"):
        r = await client.get(path)
        assert r.status == 401 and "WWW-Authenticate" in r.headers, path
        r = await client.get(path, headers={"Authorization": "Bearer nobody"})
        assert r.status == 401, path
        r = await client.get(path, headers={"Authorization": f"Bearer {READ}"})
        assert r.status == 200, path
    assert (await client.get("/api/v1/health")).status == 200


async def test_slow_post_body_is_timed_out(tmp_path, aiohttp_server) -> None:
    app = make_app(_cfg(tmp_path, body_timeout_s=0.5))
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\n"
                 "Content-Length: 100000\r\n\r\n{".encode())
    await writer.drain()
    t0 = time.monotonic()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert b" 408 " in status and time.monotonic() - t0 < 5
    writer.close()


def test_output_into_a_missing_directory_is_one_line(sim_path, tmp_path, capsys) -> None:
    rc = cli_main(["moc", str(sim_path), "--level", "0.9", "-o", str(tmp_path / "missing" / "dir" / "m.fits")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "missing" in err


def test_occupied_port_is_one_line(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, "GWFOLLOW_SERVICE_WORKERS": "1", "GWFOLLOW_STORE_PATH": str(tmp_path / "p.sqlite")}
        p = subprocess.run([sys.executable, "-m", "gwfollow.cli.main", "serve", "--port", str(port),
                            "--log-level", "ERROR"], capture_output=True, text=True, env=env, timeout=180)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("gwfollow serve: error")]
    assert "Traceback" not in p.stderr and len(lines) == 1 and "address already in use" in lines[0], p.stderr
