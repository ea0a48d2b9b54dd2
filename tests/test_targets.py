"""Targets seen from sites: windows in ranked tables, per-site products, `observe` and `fields`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from astropy.time import Time

from gwfollow import read_skymap
from gwfollow.cli.main import main
from gwfollow.config import SiteConfig, load_config, named_config
from gwfollow.products.core import process_message
from gwfollow.targets.catalogues import openngc
from gwfollow.targets.observability import target_windows
from gwfollow.targets.rank import rank_galaxies
from gwfollow.targets.windows import add_windows, parse_windows, site_of, windows_text

from .conftest import shared_path

PALOMAR = named_config(SiteConfig, "Palomar", lat_deg=33.3563, lon_deg=-116.865, height_m=1712.0, hours=24, step_minutes=30)


def test_windows_column_round_trip(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    t = rank_galaxies(sm, openngc(), level=None, limit=15).table()
    start = Time(sm.meta.event_mjd, format="mjd", scale="utc")
    add_windows(t, (PALOMAR,), start)
    ref = target_windows(np.asarray(t["ra"]), np.asarray(t["dec"]), site_of(PALOMAR), start, 24, 30)
    for text, w in zip(t["windows_Palomar"], ref):
        assert text == windows_text(w)
        assert len(parse_windows(text)) == len(w)


def test_pipeline_products_for_sites_and_telescopes() -> None:
    cfg = load_config(env={})
    body = shared_path("alerts", "S241102br-preliminary.json").read_bytes()
    res = process_message(body, "t", cfg)
    kinds = {(p.kind, p.name) for p in res.skymaps[0].products}
    assert {("galaxies", "OpenNGC"), ("fields", "ZTF"), ("observability", "Palomar")} <= kinds
    obs = next(p for p in res.skymaps[0].products if p.kind == "observability")
    s = json.loads(obs.data)
    assert len(s["slices"]) == 96 and 0 <= s["total_observable_probability"] <= 1
    assert all(sl["probability"] == 0 for sl in s["slices"] if sl["sun_alt_deg"] > -12)
    gal = json.loads(next(p for p in res.skymaps[0].products if p.kind == "galaxies").data)
    assert "windows_Palomar" in gal["columns"]
    fields = json.loads(next(p for p in res.skymaps[0].products if p.kind == "fields").data)
    assert fields["rows"][0]["rank"] == 1 and "windows_Palomar" in fields["columns"]


def test_observe_and_fields_commands(sim_path, tmp_path, capsys) -> None:
    assert main(["observe", str(sim_path), "--site", "ctio", "--hours", "6", "--step", "60", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["site"] == "ctio" and len(s["slices"]) == 6
    out = tmp_path / "obs.fits"
    assert main(["observe", str(sim_path), "--hours", "3", "-o", str(out)]) == 0
    assert "observable at some time" in capsys.readouterr().out and out.stat().st_size > 0
    assert main(["observe", str(sim_path), "--site", "atlantis"]) == 2
    assert "unknown site" in capsys.readouterr().err
    assert main(["fields", str(sim_path), "--limit", "4"]) == 0
    assert "selected" in capsys.readouterr().out
    # With --site, only fields observable from it, with their windows.
    assert main(["fields", str(sim_path), "--site", "ctio", "--start", "2026-03-01T00:00", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["site"] == "ctio" and r["windows_ctio"] for r in rows)
    assert main(["fields", str(sim_path), "--grid", str(tmp_path / "none.txt")]) == 2
    assert "--fov" in capsys.readouterr().err


def test_coverage_command_and_products(tmp_path, capsys) -> None:

    from gwfollow.config import CoverageConfig

    skymap = shared_path("skymaps", "S190425z_bayestar.fits.gz")
    assert main(["coverage", str(skymap), "--moc", str(shared_path("mocs", "P-SDSS9-r.moc.fits")),
                 "--pointings", str(shared_path("fields", "ZTF_GW190425_observation_data.csv")),
                 "--grid", str(shared_path("fields", "ZTF_Fields.txt")), "--fov", "square:6.86", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    kinds = {c["name"]: c for c in doc["coverages"]}
    ztf = kinds["ZTF_GW190425_observation_data"]
    assert ztf["kind"] == "spacetime" and 0.3 < ztf["probability"] < 0.6
    assert ztf["remaining_probability"] == pytest.approx(1 - ztf["probability"], abs=1e-9)
    assert main(["coverage", str(skymap)]) == 2
    assert "no coverage given" in capsys.readouterr().err
    cfg = load_config(env={}).updated(coverages=(
        named_config(CoverageConfig, "sdss", path=str(shared_path("mocs", "P-SDSS9-r.moc.fits"))),
        named_config(CoverageConfig, "offline", mocserver_id="CDS/not/cached"),
    ), coverage_cache=str(tmp_path / "cache"))
    res = process_message(shared_path("alerts", "S241102br-preliminary.json").read_bytes(), "t", cfg)
    cov = {p.name: json.loads(p.data) for p in res.skymaps[0].products if p.kind == "coverage"}
    assert 0 <= cov["sdss"]["probability"] <= 1 and "region_probability" in cov["sdss"]
    assert "error" in cov["offline"]  # no network, no cache: recorded, the alert goes on


def test_every_product_carries_provenance() -> None:
    cfg = load_config(env={})
    res = process_message(shared_path("alerts", "S241102br-preliminary.json").read_bytes(), "t", cfg)
    for p in res.skymaps[0].products:
        assert p.provenance["skymap_sha256"] == res.skymaps[0].sha256, p.kind
        assert p.provenance["gwfollow"], p.kind
    gal = next(p for p in res.skymaps[0].products if p.kind == "galaxies")
    assert gal.provenance["catalog"] == "OpenNGC" and gal.provenance["catalog_version"]
    moc = next(p for p in res.skymaps[0].products if p.kind == "moc")
    assert moc.provenance["level"] in (0.5, 0.9) and moc.provenance["boundary"] == "split"
