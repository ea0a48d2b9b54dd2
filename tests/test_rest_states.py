"""REST states a poller depends on, on the live service: coverage, ETags on products,
filters with valid values, and cached products turning 410 after a retraction."""

from __future__ import annotations

import asyncio

from gwfollow.config import Config, CoverageConfig, named_config, packaged_defaults
from gwfollow.service import make_app
from gwfollow.service.app import STORE
from gwfollow.service.auth import token_digest

from .conftest import shared_path

WRITE = "write-secret"
AUTH = {"Authorization": f"Bearer {WRITE}"}
STEP = 120.0  # seconds processing may take on a loaded machine before the test fails


def _cfg(tmp_path) -> Config:
    return packaged_defaults().updated(
        telescopes=(), sites=(), store=dict(path=str(tmp_path / "s.sqlite")),
        service=dict(workers=1, write_tokens_sha256=(token_digest(WRITE),)),
        coverages=(named_config(CoverageConfig, "sdss", path=str(shared_path("mocs", "P-SDSS9-r.moc.fits"))),),
        coverage_cache=str(tmp_path / "cache"))


async def _settled(store, n: int) -> None:
    async def wait() -> None:  # both steps: first products, then the slow ones (coverage)
        while store.query("SELECT COUNT(*) FROM raw_messages WHERE status != 'pending'")[0][0] < n or \
                store.query("SELECT COUNT(*) FROM deferred_work WHERE state = 'pending'")[0][0]:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(wait(), STEP)


def _variant(body: bytes, sid: str, significant: bool, group: str) -> bytes:
    """The same alert as another superevent, with another significance and group."""
    out = body.replace(b'"MS181101ab"', f'"{sid}"'.encode())
    out = out.replace(b'"significant": true', f'"significant": {str(significant).lower()}'.encode())
    return out.replace(b'"group": "CBC"', f'"group": "{group}"'.encode())


async def test_products_conditional_filtered_and_gone_after_retraction(tmp_path, aiohttp_client) -> None:
    client = await aiohttp_client(make_app(_cfg(tmp_path)))
    store = client.app[STORE]
    pre = shared_path("alerts", "MS181101ab-preliminary.json").read_bytes()
    other = _variant(pre, "MS181101zz", significant=False, group="Burst")
    assert other != pre and b'"significant": false' in other and b'"group": "Burst"' in other
    for body in (pre, other):
        assert (await client.post("/api/v1/alerts", data=body, headers=AUTH)).status == 202
    await _settled(store, 2)

    # GET /events/{id}/coverage: the probability each configured coverage holds.
    r = await client.get("/api/v1/events/MS181101ab/coverage")
    assert r.status == 200 and r.content_type == "application/json"
    cov = await r.json()
    assert cov["superevent_id"] == "MS181101ab"
    (sdss,) = cov["coverages"]
    assert sdss["name"] == "sdss" and 0 <= sdss["probability"] <= 1

    # Every product answers If-None-Match with 304 while it is unchanged.
    products = ["coverage", "moc?level=0.9", "moc?level=0.9&format=json", "targets?kind=galaxies",
                "targets?kind=galaxies&format=votable"]
    tags = {}
    for path in products:
        r = await client.get(f"/api/v1/events/MS181101ab/{path}")
        assert r.status == 200, path
        tags[path] = r.headers["ETag"]
        again = await client.get(f"/api/v1/events/MS181101ab/{path}", headers={"If-None-Match": tags[path]})
        assert again.status == 304 and again.headers["ETag"] == tags[path], path
        changed = await client.get(f"/api/v1/events/MS181101ab/{path}", headers={"If-None-Match": '"other"'})
        assert changed.status == 200 and await changed.read() == await r.read(), path

    # Filters with valid values select, not only reject.
    async def ids(query: str) -> set[str]:
        r = await client.get(f"/api/v1/events?{query}")
        assert r.status == 200, query
        return {e["superevent_id"] for e in (await r.json())["events"]}

    assert await ids("significant=true") == {"MS181101ab"}
    assert await ids("significant=false") == {"MS181101zz"}
    assert await ids("group=CBC") == {"MS181101ab"}
    assert await ids("group=Burst") == {"MS181101zz"}
    assert await ids("group=Burst&significant=true") == set()

    # A retraction withdraws the cached products: 410, even to a poller holding a tag.
    ret = shared_path("alerts", "MS181101ab-retraction.json").read_bytes()
    assert (await client.post("/api/v1/alerts", data=ret, headers=AUTH)).status == 202
    await _settled(store, 3)
    for path in products:
        for headers in ({}, {"If-None-Match": tags[path]}):
            r = await client.get(f"/api/v1/events/MS181101ab/{path}", headers=headers)
            assert r.status == 410, (path, headers)
            assert (await r.json())["code"] == "event-retracted"
    assert (await client.get("/api/v1/events/MS181101zz/coverage")).status == 200
