"""Event facts, revision changes, and the sky plot's geometry (zoom frame, RA = 0 seam)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from gwfollow.config import load_config
from gwfollow.ingest.parse import parse_alert
from gwfollow.pipeline.replay import order_messages, replay_messages
from gwfollow.products.summary import event_summary, write_outputs
from gwfollow.products.facts import event_facts, facts_lines, revision_changes
from gwfollow.products.skyplot import region_frame, sky_plot, split_at_seam
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.store import Store
from gwfollow.targets.fields import FieldOfView

from .conftest import shared_path


def test_facts_of_a_real_alert() -> None:
    raw = shared_path("alerts", "S241102br-initial.json").read_bytes()
    f = event_facts(parse_alert(raw, "S241102br-initial.json").summary(), {"distmean": 354.3, "diststd": 50.0})
    assert f["alert_type"] == "INITIAL" and f["event_time"].startswith("2024-11-02T12:40:58")
    assert f["most_probable_class"] == "BBH" and list(f["classification"])[:4] == ["BNS", "NSBH", "BBH", "Terrestrial"]
    assert set(f["properties"]) == {"HasNS", "HasRemnant", "HasMassGap"}
    assert f["far_hz"] == pytest.approx(json.loads(raw)["event"]["far"])
    assert f["far_one_per_years"] == pytest.approx(1 / (f["far_hz"] * 365.25 * 86400))
    assert f["significant"] is True and f["distance_mpc"] == 354.3
    text = "\n".join(facts_lines(f))
    assert "BBH 99 %" in text and "distance 354 ± 50 Mpc" in text and "one per" in text


def test_facts_tolerate_missing_blocks() -> None:
    f = event_facts({"superevent_id": "S1", "alert_type": "PRELIMINARY", "event": None})
    assert f["classification"] == {} and f["most_probable_class"] is None and f["far_hz"] is None
    assert facts_lines(f) == ["event time - UTC"]


def test_revision_changes() -> None:
    a = {"facts": {"alert_type": "PRELIMINARY", "areas_deg2": {"0.9": 100.0}, "distance_mpc": 400.0,
                   "classification": {"BNS": 0.6, "BBH": 0.4}, "most_probable_class": "BNS"},
         "targets": {"galaxies X": ["g1", "g2", "g3"]}}
    b = {"facts": {"alert_type": "INITIAL", "areas_deg2": {"0.9": 25.0}, "distance_mpc": 350.0,
                   "classification": {"BNS": 0.3, "BBH": 0.7}, "most_probable_class": "BBH"},
         "targets": {"galaxies X": ["g2", "g4", "g1"]}}
    (ch,) = revision_changes([a, b])
    assert ch["from"] == "PRELIMINARY" and ch["to"] == "INITIAL"
    assert ch["areas_deg2"]["0.9"] == {"before": 100.0, "after": 25.0, "ratio": 0.25}
    assert ch["distance_mpc"]["change"] == -50.0
    assert ch["classification"]["changed"] and ch["classification"]["delta"]["BBH"] == pytest.approx(0.3)
    assert ch["targets"]["galaxies X"] == {"came": ["g4"], "went": ["g3"], "kept": 2}
    assert revision_changes([a]) == []


def test_summary_report_and_text_carry_facts_and_changes(tmp_path) -> None:
    import asyncio

    db = tmp_path / "f.sqlite"
    cfg = load_config(env={}).updated(store=dict(path=str(db)))
    cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, workers=1))
    store = Store(db)
    try:
        names = ["S241102br-preliminary.json", "S241102br-initial.json"]
        asyncio.run(replay_messages(order_messages([(shared_path("alerts", n).read_bytes(), n) for n in names]),
                                    cfg, store))
        s = event_summary(store, "S241102br", cfg)
        assert s["facts"]["alert_type"] == "INITIAL" and s["facts"]["most_probable_class"] == "BBH"
        assert [r["alert_type"] for r in s["revisions"]] == ["PRELIMINARY", "INITIAL"]
        (ch,) = s["changes"]
        assert ch["areas_deg2"]["0.9"]["after"] == pytest.approx(s["areas_deg2"]["0.9"])
        assert ch["areas_deg2"]["0.9"]["before"] == pytest.approx(s["skymap_versions"][0]["areas_deg2"]["0.9"])
        came_went = ch["targets"]["galaxies OpenNGC"]
        assert len(came_went["came"]) == len(came_went["went"]) == 10 - came_went["kept"]
        write_outputs(store, tmp_path / "out", cfg, reports=True)
    finally:
        store.close()
    d = tmp_path / "out" / "S241102br"
    html = (d / "report.html").read_text()
    assert "<h2>Facts</h2>" in html and "PRELIMINARY -&gt; INITIAL" in html and "BBH" in html
    text = (d / "summary.txt").read_text()
    assert "PRELIMINARY -> INITIAL" in text and "90 % area" in text
    assert json.loads((d / "summary.json").read_text())["facts"]["group"] == "CBC"


def test_split_at_seam() -> None:
    ra, dec = split_at_seam([358.0, 362.0, 362.0, 358.0], [0.0, 0.0, 2.0, 2.0])
    assert np.isnan(ra).sum() == 2
    finite = ra[~np.isnan(ra)]
    assert ((finite >= 0) & (finite < 360)).all()
    # No segment of a piece spans more than the field: nothing is drawn across the map.
    pieces = np.split(ra, np.flatnonzero(np.isnan(ra)))
    for p in pieces:
        p = p[~np.isnan(p)]
        assert np.ptp(p) < 5
    r2, d2 = split_at_seam([10.0, 20.0], [1.0, 2.0])
    np.testing.assert_array_equal(r2, [10.0, 20.0])


def test_zoom_frames_the_whole_elongated_region(tmp_path) -> None:
    """MS181101ab's 90 % region is a narrow arc: the frame must hold all of it."""
    from astropy.table import Table
    from ligo.skymap.bayestar import rasterize
    from ligo.skymap.postprocess import find_greedy_credible_levels

    sm = read_skymap(shared_path("skymaps", "MS181101ab_bayestar.multiorder.fits"))
    prob = np.asarray(rasterize(Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity}), order=8)["PROB"])
    ra, dec, radius = region_frame(prob)
    cls = find_greedy_credible_levels(prob)
    from astropy_healpix import HEALPix

    lon, lat = HEALPix(nside=256, order="nested").healpix_to_lonlat(np.flatnonzero(cls <= 0.9))
    c = np.array([math.cos(math.radians(dec)) * math.cos(math.radians(ra)),
                  math.cos(math.radians(dec)) * math.sin(math.radians(ra)), math.sin(math.radians(dec))])
    v = np.stack([np.cos(lat.rad) * np.cos(lon.rad), np.cos(lat.rad) * np.sin(lon.rad), np.sin(lat.rad)], axis=1)
    assert np.degrees(np.arccos(np.clip(v @ c, -1, 1))).max() <= radius
    # And it is not the old peak +- sqrt(area) box, which cut the arc.
    assert radius > math.sqrt((cls <= 0.9).sum() * 41252.96 / prob.size) / 2


def test_sky_plot_with_fields_across_ra_zero(tmp_path) -> None:
    """A map at RA = 0 with fields on both sides of the seam renders (look at the PNG)."""
    from astropy.table import Table

    from gwfollow.skymaps.simulate import simulated_skymap_bytes

    sm = read_skymap(simulated_skymap_bytes(seed=5, ra_deg=0.5, dec_deg=10.0, size_deg=4.0))
    fields = Table({"ra": [357.0, 0.2, 3.0], "dec": [10.0, 12.0, 8.0]})
    gal = Table({"ra": [359.5, 1.0], "dec": [10.0, 11.0]})
    p = sky_plot(sm, tmp_path / "seam.png", fields=fields, targets=gal, fov=FieldOfView.square(6.86),
                 title="fields across RA = 0")
    assert p.stat().st_size > 20_000
