"""Plans computed by the pipeline for every sky map of an alert, served over REST;
``role=`` on product endpoints; MOCs at any credible level."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
from astropy.io import votable
from astropy.table import Table
from mocpy import MOC

from gwfollow.config import StoreConfig, load_config
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.service import make_app
from gwfollow.store import Store

from .conftest import shared_path

NAMES = ["S250720j-preliminary.json", "S241102br-preliminary.json"]
PALOMAR = (33.3563, -116.8650, 1712.0)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    import asyncio

    db = tmp_path_factory.mktemp("plan") / "plan.sqlite"
    cfg = dataclasses.replace(load_config(env={}), store=StoreConfig(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    msgs = order_messages([(shared_path("alerts", n).read_bytes(), n) for n in NAMES])
    asyncio.run(replay_messages(msgs, cfg, store))
    yield cfg, store
    store.close()


@pytest.fixture
async def client(filled, aiohttp_client):
    return await aiohttp_client(make_app(filled[0]))


def _rows(store: Store, sid: str, role: str, name: str) -> list[dict]:
    maps = {m["id"]: m["role"] for m in store.skymaps_of(sid)}
    prods = [p for p in store.products_of(sid) if p["kind"] == "plan" and p["name"] == name
             and maps[p["skymap_id"]] == role]
    assert len(prods) == 1, prods
    return json.loads(store.product_data(prods[0]["id"]))["rows"]


def _observable_by_astropy(rows: list[dict]) -> None:
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time
    from astropy.utils import iers

    lat, lon, h = PALOMAR
    loc = EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, h * u.m)
    ra = np.array([r["ra"] for r in rows])
    dec = np.array([r["dec"] for r in rows])
    with iers.conf.set_temp("auto_download", False):
        for key in ("start_utc", "end_utc"):
            t = Time([r[key].rstrip("Z") for r in rows], scale="utc")
            frame = AltAz(obstime=t, location=loc)
            alt = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame).alt.deg
            sun = get_body("sun", t, loc).transform_to(frame).alt.deg
            assert alt.min() >= 30.0 and sun.max() <= -12.0, (alt.min(), sun.max())


@pytest.mark.shared_data
@pytest.mark.parametrize("role", ["gw", "combined"])
def test_s250720j_plans_select_only_what_palomar_observes(filled, role: str) -> None:
    _, store = filled
    rows = _rows(store, "S250720j", role, "ZTF@Palomar")
    assert rows, "a plan with exposures"
    # Palomar (lat 33.36) never raises Dec < -26.6 to airmass 2: none planned (issue: 19 of 68 were).
    assert min(r["dec"] for r in rows) > 33.3563 - 60.0
    _observable_by_astropy(rows)
    starts = [r["start_utc"] for r in rows]
    assert starts == sorted(starts)
    assert rows[-1]["cumprob"] == pytest.approx(sum(r["prob"] for r in rows))
    # Every other product is made for the combined map too.
    maps = {m["id"]: m["role"] for m in store.skymaps_of("S250720j")}
    kinds = {p["kind"] for p in store.products_of("S250720j") if maps[p["skymap_id"]] == role}
    assert {"moc", "galaxies", "fields", "observability", "plan"} <= kinds


async def test_plan_endpoint_formats(client) -> None:
    r = await client.get("/api/v1/events/S250720j/plan?telescope=ZTF&site=Palomar")
    assert r.status == 200
    doc = await r.json()
    assert doc["columns"][:10] == ["field_id", "ra", "dec", "start_utc", "end_utc", "filter", "visit", "airmass",
                                   "prob", "cumprob"]
    n = len(doc["rows"])
    csv = await (await client.get("/api/v1/events/S250720j/plan?format=csv")).text()
    assert len(Table.read(csv, format="ascii.csv")) == n
    vo = await (await client.get("/api/v1/events/S250720j/plan?format=votable")).read()
    t = votable.parse_single_table(io.BytesIO(vo)).to_table()
    assert len(t) == n and t["ra"].unit == "deg"
    comb = await (await client.get("/api/v1/events/S250720j/plan?role=combined")).json()
    assert comb["provenance"]["skymap_sha256"] != doc["provenance"]["skymap_sha256"]
    r = await client.get("/api/v1/events/S250720j/plan?telescope=ZTF&site=Atlantis")
    assert r.status == 404 and "ZTF@Palomar" in (await r.json())["detail"]
    ev = await (await client.get("/api/v1/events/S250720j")).json()
    assert "/api/v1/events/S250720j/plan?telescope=ZTF&site=Palomar" in ev["links"]["plan"]


async def test_role_is_honoured_or_refused(client, tmp_path) -> None:
    gw = await (await client.get("/api/v1/events/S250720j/moc?level=0.9&format=json")).read()
    comb = await (await client.get("/api/v1/events/S250720j/moc?level=0.9&format=json&role=combined")).read()
    a_gw = MOC.from_json(json.loads(gw)).sky_fraction * 41252.96
    a_comb = MOC.from_json(json.loads(comb)).sky_fraction * 41252.96
    assert a_comb < a_gw / 5  # issue: 160.7 against 2,176 deg2
    for path in ("moc", "targets", "observability", "coverage", "plan"):
        r = await client.get(f"/api/v1/events/S241102br/{path}?role=combined")
        assert r.status == 404, path
        body = await r.json()
        assert body["code"] == "no-such-map" and body["available"] == ["gw"], path
    r = await client.get("/api/v1/events/S250720j/targets?kind=fields&role=combined")
    assert r.status == 200


async def test_any_credible_level_on_request(client, filled, tmp_path) -> None:
    from gwfollow.regions.moc import credible_ranges, ranges_area_deg2
    from gwfollow.skymaps.skymap import read_skymap

    r = await client.get("/api/v1/events/S241102br/moc?level=0.95")
    assert r.status == 200
    p = tmp_path / "m95.fits"
    p.write_bytes(await r.read())
    got = MOC.load(str(p), format="fits")
    _, store = filled
    m = store.skymaps_of("S241102br")[-1]
    sm = read_skymap(store.skymap_bytes(m["id"]))
    want = ranges_area_deg2(credible_ranges(sm, [0.95], "split")[0])
    assert got.sky_fraction * 4 * math.pi * (180 / math.pi) ** 2 == pytest.approx(want, rel=1e-9)
    again = await client.get("/api/v1/events/S241102br/moc?level=0.95&format=ascii")
    assert again.status == 200
    for bad in ("0", "1.5", "x"):
        assert (await client.get(f"/api/v1/events/S241102br/moc?level={bad}")).status == 400


def _shifted_combined_alert(hours: float) -> bytes:
    """S250720j with its combined sky map's event time (DATE-OBS, MJD-OBS) moved by ``hours``."""
    import base64

    from astropy.io import fits
    from astropy.time import Time, TimeDelta

    doc = json.loads(shared_path("alerts", "S250720j-preliminary.json").read_bytes())
    ext = doc["external_coinc"]
    with fits.open(io.BytesIO(base64.b64decode(ext["combined_skymap"]))) as h:
        hdr = h[1].header
        t = Time(hdr["DATE-OBS"], scale="utc") + TimeDelta(hours * 3600.0, format="sec")
        hdr["DATE-OBS"] = t.isot
        hdr["MJD-OBS"] = t.mjd
        buf = io.BytesIO()
        h.writeto(buf)
    ext["combined_skymap"] = base64.b64encode(buf.getvalue()).decode()
    return json.dumps(doc).encode()


@pytest.mark.shared_data
async def test_space_time_moc_takes_the_event_time_of_the_role(tmp_path, aiohttp_client) -> None:
    from astropy.time import Time
    from mocpy import STMOC

    cfg = dataclasses.replace(load_config(env={}), store=StoreConfig(path=str(tmp_path / "st.sqlite")))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1),
                              plan=dataclasses.replace(cfg.plan, enabled=False), telescopes=(), sites=(),
                              targets=dataclasses.replace(cfg.targets, catalogs=()))
    store = Store(cfg.store.path)
    try:
        await replay_messages(order_messages([(_shifted_combined_alert(2.0), "S250720j-shifted.json")]), cfg, store)
    finally:
        store.close()
    client = await aiohttp_client(make_app(cfg))
    starts = {}
    for role in ("gw", "combined"):
        r = await client.get(f"/api/v1/events/S250720j/moc?level=0.9&duration=1h&role={role}")
        assert r.status == 200, role
        p = tmp_path / f"{role}.fits"
        p.write_bytes(await r.read())
        starts[role] = STMOC.load(str(p), format="fits").min_time
    assert (starts["combined"] - starts["gw"]).sec == pytest.approx(7200.0, abs=1.0)
    assert abs((starts["gw"] - Time("2025-07-20T02:15:08.461", scale="utc")).sec) < 1.0
