"""The fast path of cached GETs answers exactly what the ordinary path answers, and never more."""

from __future__ import annotations

import dataclasses

import pytest

from gwfollow.config import load_config
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.service import make_app
from gwfollow.service.auth import token_digest
from gwfollow.service.keys import RESPONSE_CACHE
from gwfollow.store import Store

from .conftest import shared_path

URL = "/api/v1/events/S241102br/targets?kind=galaxies&format=votable&limit=100"
SAME = ("ETag", "Last-Modified", "Content-Type", "Cache-Control", "Content-Security-Policy",
        "X-Content-Type-Options", "Content-Length")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):  # type: ignore[no-untyped-def]
    import asyncio

    db = tmp_path_factory.mktemp("fast") / "fast.sqlite"
    cfg = load_config(env={}).updated(store=dict(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    asyncio.run(replay_messages(order_messages([(shared_path("alerts", "S241102br-preliminary.json").read_bytes(),
                                                 "S241102br-preliminary.json")]), cfg, store))
    store.close()
    return cfg


async def test_a_cached_hit_is_the_same_response(filled, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(filled))
    first = await client.get(URL)
    assert first.status == 200
    body = await first.read()
    entry = client.app[RESPONSE_CACHE].get(URL)
    assert entry is not None and entry[0] == body  # the fast path has what it needs
    again = await client.get(URL)
    assert again.status == 200 and await again.read() == body
    assert {h: again.headers.get(h) for h in SAME} == {h: first.headers.get(h) for h in SAME}
    assert again.headers["Content-Security-Policy"] and again.headers["X-Content-Type-Options"] == "nosniff"
    # Conditional GETs: a matching (also weak, also in a list) tag gives 304, another tag the body.
    for inm in (first.headers["ETag"], f'W/{first.headers["ETag"]}', f'"x", {first.headers["ETag"]}', "*"):
        r = await client.get(URL, headers={"If-None-Match": inm})
        assert r.status == 304 and r.headers["ETag"] == first.headers["ETag"], inm
    r = await client.get(URL, headers={"If-None-Match": '"other"'})
    assert r.status == 200 and await r.read() == body


async def test_cors_requests_take_the_ordinary_path(filled, aiohttp_client) -> None:
    cfg = filled.updated(service=dict(cors_origins=("https://team.example",)))
    client = await aiohttp_client(make_app(cfg))
    assert (await client.get(URL)).status == 200  # cached now
    r = await client.get(URL, headers={"Origin": "https://team.example"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://team.example"


async def test_a_cached_body_still_needs_a_token_when_reads_are_closed(filled, aiohttp_client) -> None:
    cfg = filled.updated(service=dict(read_open=False, read_tokens_sha256=(token_digest("reader"),)))
    client = await aiohttp_client(make_app(cfg))
    ok = await client.get(URL, headers={"Authorization": "Bearer reader"})
    assert ok.status == 200 and client.app[RESPONSE_CACHE].get(URL) is not None
    assert (await client.get(URL)).status == 401
    assert (await client.get(URL, headers={"Authorization": "Bearer wrong"})).status == 401
