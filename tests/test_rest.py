"""The REST API on the real application (aiohttp_client), with a store filled by the pipeline."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from astropy.io import votable
from astropy.table import Table
from mocpy import MOC, STMOC

from gwfollow.config import load_config
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.service import make_app
from gwfollow.store import Store

from .conftest import shared_path

NAMES = ["S241102br-preliminary.json", "S241102br-initial.json", "MS181101ab-preliminary.json",
         "MS181101ab-retraction.json"]


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    import asyncio

    db = tmp_path_factory.mktemp("rest") / "rest.sqlite"
    cfg = load_config(env={}).updated(store=dict(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    msgs = order_messages([(shared_path("alerts", n).read_bytes(), n) for n in NAMES])
    asyncio.run(replay_messages(msgs, cfg, store))
    store.close()
    return cfg


@pytest.fixture
async def client(filled_db, aiohttp_client):
    return await aiohttp_client(make_app(filled_db))


async def test_events_list_etag_since_pagination(client) -> None:
    r = await client.get("/api/v1/events")
    assert r.status == 200
    body = await r.json()
    assert {e["superevent_id"] for e in body["events"]} == {"S241102br", "MS181101ab"}
    tag = r.headers["ETag"]
    r2 = await client.get("/api/v1/events", headers={"If-None-Match": tag})
    assert r2.status == 304
    r3 = await client.get("/api/v1/events", headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert r3.status == 304
    assert (await (await client.get("/api/v1/events?state=retracted")).json())["total"] == 1
    assert (await (await client.get("/api/v1/events?since=2999-01-01T00:00:00Z")).json())["events"] == []
    page = await (await client.get("/api/v1/events?limit=1")).json()
    assert len(page["events"]) == 1 and page["next"]
    for bad in ("limit=0", "limit=x", "state=gone", "since=yesterday", "significant=maybe"):
        r = await client.get(f"/api/v1/events?{bad}")
        assert r.status == 400 and (await r.json())["code"] == "bad-parameter", bad


async def test_event_and_moc_formats(client, tmp_path) -> None:
    ev = await (await client.get("/api/v1/events/S241102br")).json()
    assert ev["state"] == "active" and len(ev["alerts"]) == 2 and ev["links"]["targets"]
    r = await client.get("/api/v1/events/S241102br/moc?level=0.9")
    assert r.status == 200 and r.content_type == "application/fits"
    p = tmp_path / "m.fits"
    p.write_bytes(await r.read())
    moc = MOC.load(str(p), format="fits")
    area = ev["areas_deg2"]["0.9"]
    assert moc.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2 == pytest.approx(area, rel=1e-9)
    j = await (await client.get("/api/v1/events/S241102br/moc?level=0.9&format=json")).read()
    assert MOC.from_json(json.loads(j)) == moc
    a = await (await client.get("/api/v1/events/S241102br/moc?level=0.9&format=ascii")).text()
    assert MOC.from_string(a, format="ascii") == moc
    r = await client.get("/api/v1/events/S241102br/moc?level=0.9&duration=1d")
    p.write_bytes(await r.read())
    st = STMOC.load(str(p), format="fits")
    assert (st.max_time - st.min_time).sec == pytest.approx(86400, abs=0.01)
    # A level that is not configured is computed on request (issue 12), not 404.
    r = await client.get("/api/v1/events/S241102br/moc?level=0.7")
    assert r.status == 200
    p.write_bytes(await r.read())
    assert MOC.load(str(p), format="fits").sky_fraction < moc.sky_fraction
    # ... and written by the same writer as the configured levels: the same provenance keywords.
    from astropy.io import fits

    with fits.open(p) as h07:
        r09 = await client.get("/api/v1/events/S241102br/moc?level=0.9")
        with fits.open(io.BytesIO(await r09.read())) as h09:
            keys = ("OBJECT", "CREDBND", "SKYMAPSH", "GWFVERS")
            assert [h07[1].header[k] for k in keys] == [h09[1].header[k] for k in keys]
            assert h07[1].header["CREDLEV"] == 0.7
    assert (await client.get("/api/v1/events/S241102br/moc?level=x")).status == 400
    assert (await client.get("/api/v1/events/S241102br/moc?format=png")).status == 400
    assert (await client.get("/api/v1/events/S241102br/moc?duration=soon")).status == 400
    assert (await client.get("/api/v1/events/S999999zz/moc")).status == 404


async def test_targets_formats(client) -> None:
    r = await client.get("/api/v1/events/S241102br/targets?kind=galaxies&limit=10&format=votable")
    assert r.status == 200
    t = votable.parse(io.BytesIO(await r.read())).get_first_table().to_table()
    assert len(t) == 10 and t.colnames[:4] == ["rank", "id", "ra", "dec"] and str(t["ra"].unit) == "deg"
    c = Table.read(await (await client.get("/api/v1/events/S241102br/targets?limit=5&format=csv")).text(),
                   format="ascii.csv")
    assert list(c["rank"]) == [1, 2, 3, 4, 5]
    f = await (await client.get("/api/v1/events/S241102br/targets?kind=fields&telescope=ZTF")).json()
    assert f["rows"][0]["rank"] == 1 and "cumprob" in f["columns"]
    assert (await client.get("/api/v1/events/S241102br/targets?kind=fields&telescope=Rubin")).status == 404
    assert (await client.get("/api/v1/events/S241102br/targets?kind=stars")).status == 400
    o = await (await client.get("/api/v1/events/S241102br/observability?site=Palomar")).json()
    assert len(o["slices"]) == 96


async def test_retracted_event_is_gone(client) -> None:
    for path in ("moc?level=0.9", "targets", "observability"):
        r = await client.get(f"/api/v1/events/MS181101ab/{path}")
        assert r.status == 410, path
        body = await r.json()
        assert body["code"] == "event-retracted" and r.content_type == "application/problem+json"
    ev = await (await client.get("/api/v1/events/MS181101ab")).json()
    assert ev["retracted"] is True


async def test_responses_follow_the_openapi_description(client) -> None:
    from gwfollow.service.openapi import spec

    paths = spec()["paths"]
    cases = [
        ("/api/v1/events", "/api/v1/events"), ("/api/v1/events?limit=0", "/api/v1/events"),
        ("/api/v1/events/S241102br", "/api/v1/events/{id}"), ("/api/v1/events/nope", "/api/v1/events/{id}"),
        ("/api/v1/events/S241102br/moc?format=json", "/api/v1/events/{id}/moc"),
        ("/api/v1/events/MS181101ab/moc", "/api/v1/events/{id}/moc"),
        ("/api/v1/events/S241102br/targets?format=csv&site=Palomar", "/api/v1/events/{id}/targets"),
        ("/api/v1/events/S241102br/targets?site=Atlantis", "/api/v1/events/{id}/targets"),
        ("/api/v1/events/S241102br/observability", "/api/v1/events/{id}/observability"),
        ("/api/v1/health", "/api/v1/health"), ("/metrics", "/metrics"),
    ]
    for url, template in cases:
        r = await client.get(url)
        documented = paths[template]["get"]["responses"]
        assert str(r.status) in documented, (url, r.status)
        content = documented[str(r.status)].get("content")
        if content:
            assert r.content_type in content, (url, r.content_type)
        if r.status >= 400:
            body = await r.json()
            assert {"status", "code", "detail"} <= set(body)
    t = Table.read(await (await client.get("/api/v1/events/S241102br/targets?format=csv&site=Palomar")).text(),
                   format="ascii.csv")
    assert [c for c in t.colnames if c.startswith("windows_")] == ["windows_Palomar"]


async def test_report_metrics_openapi(client) -> None:
    r = await client.get("/api/v1/events/S241102br/report")
    assert r.status == 200 and "S241102br" in await r.text()
    png = await (await client.get("/api/v1/events/S241102br/report.png")).read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    m = await (await client.get("/metrics")).text()
    assert "gwfollow_store_rows" in m and "gwfollow_queue_depth" in m
    spec = await (await client.get("/api/v1/openapi.json")).json()
    from openapi_spec_validator import validate

    validate(spec)
    routes = {r.resource.canonical for r in client.app.router.routes() if r.method in ("GET", "POST")
              and r.resource.canonical.startswith(("/api/", "/metrics"))}  # not the web pages
    assert routes <= set(spec["paths"])
