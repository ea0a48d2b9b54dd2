"""HTTP push, spool directory and the OAuth token provider, with real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from gwfollow.config import (
    Config,
    packaged_defaults,
)
from gwfollow.errors import FetchError
from gwfollow.pipeline.listeners import OAuthTokenProvider
from gwfollow.service import make_app
from gwfollow.service.app import STORE
from gwfollow.service.auth import token_digest

from .conftest import settle, shared_path

WRITE = "write-secret"
READ = "read-secret"


def _cfg(tmp_path, **service) -> Config:
    svc = dict(workers=1, write_tokens_sha256=(token_digest(WRITE),), read_tokens_sha256=(token_digest(READ),),
               **service)
    return packaged_defaults().updated(telescopes=(), sites=(), store=dict(path=str(tmp_path / "s.sqlite")),
                                       service=svc)


async def test_post_alert_auth_and_processing(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path)))
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    r = await client.post("/api/v1/alerts", data=body)
    assert r.status == 401 and r.content_type == "application/problem+json"
    assert (await r.json())["code"] == "unauthorized"
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {READ}"})
    assert r.status == 403
    r = await client.post("/api/v1/alerts", data=b"", headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 400 and (await r.json())["code"] == "empty-body"
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 202
    first = await r.json()
    assert first == {"raw_id": first["raw_id"], "new": True, "status": "pending"}
    r = await client.post("/api/v1/alerts", data=b"garbage", headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 422  # refused at once, but kept as a dead letter
    garbage = await r.json()
    assert "neither IGWN alert JSON" in garbage["detail"]
    store = client.app[STORE]
    await settle(store, 2)
    # A redelivery is recognised and answered with the stored message's state.
    r = await client.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 202
    assert (await r.json()) == {"raw_id": first["raw_id"], "new": False, "status": "processed"}
    r = await client.post("/api/v1/alerts", data=b"garbage", headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 422 and (await r.json())["raw_id"] == garbage["raw_id"]  # the same stored copy
    ev = await (await client.get("/api/v1/events/S241102br")).json()
    assert ev["state"] == "active" and set(ev["areas_deg2"]) == {"0.5", "0.9"}
    assert (await client.get("/api/v1/events/S000000xx")).status == 404
    assert len(store.dead_letters()) == 1
    r = await client.get("/api/v1/nope")
    assert r.status == 404 and (await r.json())["status"] == 404


async def test_body_size_limit(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path, max_body_mib=0.01)))
    r = await client.post("/api/v1/alerts", data=b"x" * 20000, headers={"Authorization": f"Bearer {WRITE}"})
    assert r.status == 413


async def test_read_tokens(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path, read_open=False)))
    assert (await client.get("/api/v1/events")).status == 401
    assert (await client.get("/api/v1/events", headers={"Authorization": "Bearer nope"})).status == 401  # unknown token
    assert (await client.get("/api/v1/events", headers={"Authorization": f"Bearer {READ}"})).status == 200


async def test_spool_directory(tmp_path, aiohttp_client) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = _cfg(tmp_path).updated(spool=dict(enabled=True, directory=str(spool), poll_s=0.05))
    client = await aiohttp_client(make_app(cfg))
    (spool / "a.json.part").write_bytes(shared_path("alerts", "MS181101ab-preliminary.json").read_bytes())
    (spool / "b.fits").write_bytes(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits").read_bytes())
    await asyncio.sleep(0.3)
    assert (spool / "a.json.part").exists()  # still being written: left alone
    (spool / "a.json.part").rename(spool / "a.json")
    store = client.app[STORE]
    await settle(store, 2)
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.json", "b.fits"]
    assert {e.superevent_id for e in store.events()} == {"MS181101ab", "G347305"}


async def test_oauth_token_provider(aiohttp_server) -> None:
    calls = []

    async def token(request):
        form = await request.post()
        calls.append(dict(form))
        if form.get("client_secret") != "s3cret":
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": f"tok{len(calls)}", "expires_in": 61})

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/oauth2/token"
    p = OAuthTokenProvider(url, "id", "s3cret", margin_s=60.5)
    assert await p.token() == "tok1"
    assert calls[0]["grant_type"] == "client_credentials" and calls[0]["client_id"] == "id"
    await asyncio.sleep(0.6)  # within the refresh margin: a new token is fetched
    assert await p.token() == "tok2"
    bad = OAuthTokenProvider(url, "id", "wrong")
    with pytest.raises(FetchError, match="401") as ei:
        await bad.token()
    assert ei.value.status == 401 and not ei.value.transient


async def test_webhooks_signed_retried_and_logged(tmp_path, aiohttp_client, aiohttp_server) -> None:
    from gwfollow.service.webhooks import verify

    got = []

    async def receiver(request):
        body = await request.read()
        got.append((request.headers.get("X-Gwfollow-Event"), request.headers["X-Gwfollow-Delivery"],
                    verify("s3cret", body, request.headers["X-Gwfollow-Signature"]), json.loads(body)))
        if len(got) == 1:
            return web.Response(status=503)  # the first attempt fails: retried
        return web.Response(status=204)

    rapp = web.Application()
    rapp.router.add_post("/hook", receiver)
    server = await aiohttp_server(rapp)
    cfg = _cfg(tmp_path, webhook_urls=(f"http://127.0.0.1:{server.port}/hook",), webhook_secret="s3cret",
               webhook_backoff_s=0.05)
    client = await aiohttp_client(make_app(cfg))
    for name in ("MS181101ab-preliminary.json", "MS181101ab-retraction.json"):
        await client.post("/api/v1/alerts", data=shared_path("alerts", name).read_bytes(),
                          headers={"Authorization": f"Bearer {WRITE}"})
        await settle(client.app[STORE], 1 if "prelim" in name else 2)
    t0 = time.monotonic()
    while len(got) < 3 and time.monotonic() - t0 < 20:
        await asyncio.sleep(0.05)
    assert [g[0] for g in got] == ["new", "new", "retracted"]
    assert got[0][1] == got[1][1] and all(g[2] for g in got)  # same delivery id on retry; signatures valid
    assert got[2][3]["superevent_id"] == "MS181101ab" and all(p["withdrawn"] for p in got[2][3]["products"])
    log = client.app[STORE].deliveries()
    assert [(d["attempt"], d["status"]) for d in log] == [(1, 503), (2, 204), (1, 204)]


async def test_cors(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path, cors_origins=("https://team.example",))))
    r = await client.get("/api/v1/events", headers={"Origin": "https://team.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://team.example"
    r = await client.options("/api/v1/events", headers={"Origin": "https://team.example"})
    assert r.status == 204 and "GET" in r.headers["Access-Control-Allow-Methods"]
    r = await client.get("/api/v1/events", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = await client.get("/api/v1/events/nope", headers={"Origin": "https://team.example"})
    assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "https://team.example"


async def test_response_cache_follows_new_products(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path)))
    store = client.app[STORE]
    auth = {"Authorization": f"Bearer {WRITE}"}
    await client.post("/api/v1/alerts", data=shared_path("alerts", "S241102br-preliminary.json").read_bytes(),
                      headers=auth)
    await settle(store, 1)
    r1 = await client.get("/api/v1/events/S241102br")
    first = await r1.json()
    assert len(first["alerts"]) == 1
    assert (await client.get("/api/v1/events/S241102br", headers={"If-None-Match": r1.headers["ETag"]})).status == 304
    await client.post("/api/v1/alerts", data=shared_path("alerts", "S241102br-initial.json").read_bytes(),
                      headers=auth)
    await settle(store, 2)
    r2 = await client.get("/api/v1/events/S241102br", headers={"If-None-Match": r1.headers["ETag"]})
    assert r2.status == 200 and len((await r2.json())["alerts"]) == 2
