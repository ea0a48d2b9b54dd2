"""FAIR VOTables checked by the VO's own validator (STILTS votlint), and MOC files equal across channels."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import votable
from astropy.table import Table

from gwfollow.cli.main import main
from gwfollow.config import load_config
from gwfollow.errors import ReportError
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.products.votable import ColumnMeta, votable_bytes
from gwfollow.service import make_app
from gwfollow.store import Store
from gwfollow.targets.fields import FieldOfView, footprint_polygons

from .conftest import shared_path
from .system_tools import require_tool


@pytest.fixture(scope="session")
def stilts() -> str:
    return require_tool("stilts", "stilts")


def votlint(stilts: str, data: bytes | Path, tmp_path: Path) -> list[str]:
    """votlint's ERROR and WARNING lines for a VOTable (empty: clean)."""
    if isinstance(data, bytes):
        p = tmp_path / f"t{abs(hash(data))}.xml"
        p.write_bytes(data)
    else:
        p = data
    out = subprocess.run([stilts, "votlint", f"votable={p}"], capture_output=True, text=True, timeout=120)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith(("ERROR", "WARNING"))]


def check_fair(data: bytes) -> votable.tree.VOTableFile:
    """Every FIELD has a UCD and a description; positions are ICRS, in deg, with meta.main."""
    vt = votable.parse(io.BytesIO(data), verify="exception")
    tab = vt.get_first_table()
    for f in tab.fields:
        assert f.ucd, f.name
        assert f.description, f.name
    names = {f.name: f for f in tab.fields}
    if "ra" in names:
        assert names["ra"].ucd == "pos.eq.ra;meta.main" and str(names["ra"].unit) == "deg"
        assert names["dec"].ucd == "pos.eq.dec;meta.main" and str(names["dec"].unit) == "deg"
        assert [c.system for c in vt.coordinate_systems] == ["ICRS"]
        assert names["ra"].ref == vt.coordinate_systems[0].ID
    return vt


def test_votlint_is_live(stilts, tmp_path) -> None:
    """The validator reports a broken document (so a clean result means something)."""
    t = Table({"x": [1.0, 2.0]})
    good = votable_bytes(t, columns={"x": ColumnMeta("phot.mag", "mag", "a magnitude")})
    assert votlint(stilts, good, tmp_path) == []
    broken = good.replace(b'name="x"', b'name="x" ID="prov_gwfollow"')
    assert any(ln.startswith("ERROR") for ln in votlint(stilts, broken, tmp_path))


def test_column_without_metadata_is_an_error() -> None:
    with pytest.raises(ReportError, match="'mystery'"):
        votable_bytes(Table({"mystery": [1]}))


@pytest.mark.parametrize("ucd", ["foo", "stat.prob", "meta.main;pos.eq.ra"])
def test_ucds_outside_ucd1plus_are_refused(ucd) -> None:
    """votlint (STILTS 3.4) does not check UCD words; the writer does, with astropy's UCD1+ list."""
    with pytest.raises(ReportError, match="UCD1"):
        votable_bytes(Table({"x": [1.0]}), columns={"x": ColumnMeta(ucd, "", "a column")})


def test_cli_tables_pass_votlint(stilts, tmp_path) -> None:
    sm = shared_path("skymaps", "S190814bv_bayestar.multiorder.fits")
    g, f, o = tmp_path / "g.xml", tmp_path / "f.xml", tmp_path / "o.xml"
    assert main(["rank", str(sm), "--catalog", "openngc", "-o", str(g)]) == 0
    assert main(["fields", str(sm), "--telescope", "ZTF", "-o", str(f)]) == 0
    assert main(["observe", str(sm), "--site", "palomar", "--hours", "6", "--table", str(o)]) == 0
    for p in (g, f, o):
        assert votlint(stilts, p, tmp_path) == [], p.name
        vt = check_fair(p.read_bytes())
        params = {pa.name: pa for pa in vt.resources[0].params}
        assert params["alert_id"].value == "S190814bv" or params["alert_id"].value  # OBJECT of the map
        assert len(params["skymap_sha256"].value) == 64
    vt = votable.parse(str(g))
    params = {pa.name: pa.value for pa in vt.resources[0].params}
    assert params["catalog"] == "OpenNGC" and params["catalog_version"]
    vt = votable.parse(str(o))
    assert [ts.timescale for ts in vt.time_systems] == ["UTC"]
    assert {f.name: f.ref for f in vt.get_first_table().fields}["start"] == vt.time_systems[0].ID


def test_field_footprints_are_dali_polygons(stilts, tmp_path) -> None:
    sm = shared_path("skymaps", "S190814bv_bayestar.multiorder.fits")
    f = tmp_path / "f.xml"
    assert main(["fields", str(sm), "--telescope", "ZTF", "-o", str(f)]) == 0
    tab = votable.parse(str(f)).get_first_table()
    col = {fl.name: fl for fl in tab.fields}["s_region"]
    assert col.xtype == "polygon" and col.ucd.startswith("pos.outline")
    t = tab.to_table()
    poly = np.asarray(t["s_region"], dtype=float)
    assert poly.shape[1] == 8  # four corners of ZTF's square
    # Counter-clockwise seen from the centre of the sphere (DALI): each edge turns so the
    # centre lies on its left, i.e. (v_i x v_i+1) . centre < 0 in a right-handed frame.
    for row, ra0, dec0 in zip(poly, t["ra"], t["dec"]):
        ra, dec = np.radians(row[0::2]), np.radians(row[1::2])
        v = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
        c = np.array([np.cos(np.radians(dec0)) * np.cos(np.radians(ra0)),
                      np.cos(np.radians(dec0)) * np.sin(np.radians(ra0)), np.sin(np.radians(dec0))])
        turns = np.einsum("ij,j->i", np.cross(v, np.roll(v, -1, axis=0)), c)
        assert (turns < 0).all()
        # Corners lie half a diagonal from the centre.
        sep = np.degrees(np.arccos(np.clip(v @ c, -1, 1)))
        assert sep == pytest.approx(np.degrees(np.arctan(np.hypot(*[np.tan(np.radians(3.43))] * 2))), abs=1e-3)


def test_polygons_across_ra_zero_and_circles() -> None:
    p = footprint_polygons([0.5], [10.0], FieldOfView.square(4.0))[0]
    assert ((p[0::2] >= 0) & (p[0::2] < 360)).all() and (p[0::2] > 350).sum() == 2
    c = footprint_polygons([180.0], [-30.0], FieldOfView.circle(1.0))
    assert c.shape == (1, 48)


@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    import asyncio

    db = tmp_path_factory.mktemp("vot") / "vot.sqlite"
    cfg = load_config(env={}).updated(store=dict(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    msgs = order_messages([(shared_path("alerts", "S241102br-preliminary.json").read_bytes(),
                            "S241102br-preliminary.json")])
    asyncio.run(replay_messages(msgs, cfg, store))
    store.close()
    return cfg


@pytest.fixture
async def client(filled_db, aiohttp_client):
    return await aiohttp_client(make_app(filled_db))


async def test_rest_tables_pass_votlint(client, stilts, tmp_path) -> None:
    base = "/api/v1/events/S241102br"
    for q in ("targets?kind=galaxies&format=votable", "targets?kind=fields&format=votable&limit=20",
              "observability?format=votable", "plan?format=votable"):
        r = await client.get(f"{base}/{q}")
        assert r.status == 200, q
        body = await r.read()
        assert votlint(stilts, body, tmp_path) == [], q
        vt = check_fair(body)
        params = {p.name: p.value for p in vt.resources[0].params}
        assert params["alert_id"] == "S241102br", q
        if "targets" in q or "plan" in q:
            assert params["alert_type"] == "PRELIMINARY", q
        if "plan" in q:  # every exposure's footprint, as for the fields
            assert vt.get_first_table().to_table()["s_region"].shape[1] == 8
    csv = await (await client.get(f"{base}/targets?kind=fields&format=csv")).text()
    assert "s_region" in csv.splitlines()[0]


async def test_moc_identical_from_cli_and_rest(client, filled_db, tmp_path) -> None:
    """``gwfollow moc`` writes the very bytes ``GET /moc`` serves: NUNIQ, same provenance keywords."""
    from astropy.io import fits

    store = Store(filled_db.store.path)
    try:
        maps = store.skymaps_of("S241102br")
        data = store.skymap_bytes(maps[-1]["id"])
    finally:
        store.close()
    sm = tmp_path / "map.fits"
    sm.write_bytes(data)
    out = tmp_path / "region.fits"
    levels = [f"{lv:g}" for lv in filled_db.skymap.levels]
    assert main(["moc", str(sm), "--level", *levels, "-o", str(out)]) == 0
    for lv in levels:
        rest = await (await client.get(f"/api/v1/events/S241102br/moc?level={lv}")).read()
        cli = out.with_name(f"region-{lv}.fits").read_bytes() if len(levels) > 1 else out.read_bytes()
        assert cli == rest, lv
        h = fits.getheader(io.BytesIO(cli), 1)
        assert h["ORDERING"] == "NUNIQ" and h["CREDLEV"] == float(lv) and len(h["SKYMAPSH"]) == 64
        assert h["OBJECT"] and h["GWFVERS"] and h["CREDBND"]


async def test_stmoc_identical_from_cli_and_rest_with_provenance(client, filled_db, tmp_path) -> None:
    """``gwfollow moc --duration`` writes the very ST-MOC bytes ``GET /moc?duration=`` serves, with the
    space MOC's provenance keywords and the time window; mocpy reads them."""
    from astropy.io import fits
    from astropy.time import Time, TimeDelta
    from mocpy import MOC, STMOC, TimeMOC

    store = Store(filled_db.store.path)
    try:
        data = store.skymap_bytes(store.skymaps_of("S241102br")[-1]["id"])
    finally:
        store.close()
    sm = tmp_path / "map.fits"
    sm.write_bytes(data)
    out = tmp_path / "window.fits"
    assert main(["moc", str(sm), "--level", "0.9", "--duration", "6h", "-o", str(out)]) == 0
    cli = out.read_bytes()
    rest = await (await client.get("/api/v1/events/S241102br/moc?level=0.9&duration=6h")).read()
    assert cli == rest
    space = fits.getheader(io.BytesIO(await (await client.get("/api/v1/events/S241102br/moc?level=0.9")).read()), 1)
    h = fits.getheader(io.BytesIO(cli), 1)
    assert h["MOCDIM"] == "TIME.SPACE" and h["MOCTOOL"] == "gwfollow"
    for k in ("OBJECT", "CREDLEV", "CREDBND", "SKYMAPSH", "GWFVERS"):
        assert h[k] == space[k], k
    assert h["TWDUR"] == 21600.0
    assert (Time(h["TWEND"], scale="utc") - Time(h["TWSTART"], scale="utc")).sec == pytest.approx(21600.0, abs=1e-6)
    assert h["TWSTART"].startswith("2024-11-02T12:40:58.7")  # S241102br's event time
    st = STMOC.load(str(out), format="fits")
    assert (st.max_time - st.min_time).sec == pytest.approx(21600.0, abs=1e-5)
    # mocpy returns its times as float JD (TCB), which resolves about 40 microseconds.
    assert abs((st.min_time - Time(h["TWSTART"], scale="utc")).sec) < 1e-4
    space_path = tmp_path / "region.fits"
    space_path.write_bytes(await (await client.get("/api/v1/events/S241102br/moc?level=0.9")).read())
    t = Time(h["TWSTART"], scale="utc")
    inside = TimeMOC.from_time_ranges(Time([t.mjd + 0.01], format="mjd"), Time([t.mjd + 0.02], format="mjd"),
                                      delta_t=TimeDelta(1, format="sec"))
    assert st.query_by_time(inside) == MOC.load(str(space_path), format="fits")
    # JSON has no header: the same cells, no provenance.
    j = tmp_path / "window.json"
    assert main(["moc", str(sm), "--level", "0.9", "--duration", "6h", "-o", str(j)]) == 0
    assert j.read_bytes() == await (await client.get("/api/v1/events/S241102br/moc?level=0.9&duration=6h"
                                                    "&format=json")).read()
