"""Ranked fields restricted to what the telescope's sites can observe (issue 12, item 1).

Checked with astropy's ``AltAz`` (not gwfollow's zenith vectors): every
listed field is observable from Palomar inside each of its windows, under
the configured airmass and Sun limits, and no field that astropy finds
observable (with a margin) is dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.time import TimeDelta

from gwfollow.config import load_config
from gwfollow.ingest.parse import parse_alert
from gwfollow.products.core import process_alert
from gwfollow.skymaps.skymap import read_skymap
from gwfollow.targets.fields import rank_fields, telescope_from_config
from gwfollow.targets.observable_fields import rank_observable_fields
from gwfollow.targets.plan import params_from_config
from gwfollow.targets.sites import site_from_config
from gwfollow.targets.windows import parse_windows

from .conftest import shared_path

ALERT = ("alerts", "S250720j-preliminary.json")


@pytest.fixture(scope="module")
def setting():
    cfg = load_config(env={})
    alert = parse_alert(shared_path(*ALERT).read_bytes(), "S250720j", cfg.skymap)
    sm = read_skymap(alert.skymap)
    assert [t.name for t in cfg.telescopes] == ["ZTF"] and [s.name for s in cfg.sites] == ["Palomar"]
    tel = telescope_from_config(cfg.telescopes[0])
    assert len(tel) > 1700  # the real ZTF primary grid
    return cfg, alert, sm, tel


def _altaz(ra: np.ndarray, dec: np.ndarray, times: list[str], sc) -> tuple[np.ndarray, np.ndarray]:
    """Altitudes of (ra, dec) at the times (broadcast: pass (n, 1) positions for an (n, m) grid)
    and the Sun's, from astropy's AltAz (no refraction)."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time
    from astropy.utils import iers

    loc = EarthLocation.from_geodetic(sc.lon_deg * u.deg, sc.lat_deg * u.deg, sc.height_m * u.m)
    with iers.conf.set_temp("auto_download", False):
        t = Time([s.rstrip("Z") for s in times], scale="utc")
        frame = AltAz(obstime=t, location=loc)
        alt = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame).alt.deg
        sun = get_body("sun", t, loc).transform_to(frame).alt.deg
    return alt, sun


def check_rows_observable(rows: list[dict], sc) -> None:
    """Every row has a window from site ``sc``, and at the start, middle and end of
    every window the field has airmass <= the limit with the Sun below the limit."""
    from astropy.time import Time

    min_alt = np.degrees(np.arcsin(1.0 / sc.max_airmass))
    ra, dec, times = [], [], []
    for r in rows:
        windows = parse_windows(r[f"windows_{sc.name}"])
        assert windows, f"field {r['field_id']} (Dec {r['dec']:.2f}) has no window from {sc.name}"
        for a, b in windows:
            mid = Time([a.rstrip("Z"), b.rstrip("Z")], scale="utc").mjd.mean()
            for t in (a, Time(mid, format="mjd").isot + "Z", b):
                ra.append(r["ra"])
                dec.append(r["dec"])
                times.append(t)
    alt, sun = _altaz(np.array(ra), np.array(dec), times, sc)
    assert alt.min() >= min_alt, (alt.min(), min_alt)
    assert sun.max() <= sc.max_sun_alt_deg, sun.max()
    assert all(sc.name in r["site"].split(";") for r in rows)


@pytest.mark.shared_data
def test_s250720j_ranks_only_fields_palomar_observes(setting) -> None:
    cfg, _, sm, tel = setting
    sc = cfg.sites[0]
    o = rank_observable_fields(sm, tel, [site_from_config(sc)], sm.event_t0, params_from_config(cfg.plan, 10),
                               target=0.9)
    rows = list(o.table())
    assert len(rows) > 50 and o.n_unobservable > 0
    check_rows_observable([dict(zip(r.colnames, r)) for r in rows], sc)
    # Palomar (lat 33.4) never raises Dec < -26.6 to airmass 2.
    assert min(r["dec"] for r in rows) > sc.lat_deg - 60.0
    # Nothing observable was dropped: a field touching the region that astropy sees
    # at airmass < 1.95 with the Sun below -13 deg at some 5-minute step is listed.
    every = rank_fields(sm, tel, target=0.9)
    listed = set(o.ranked.rows.tolist())
    others = np.array(sorted(set(every.rows.tolist()) - listed))
    times = (sm.event_t0 + TimeDelta(np.arange(0, 24 * 3600 + 1, 300.0), format="sec")).isot.tolist()
    alt, sun = _altaz(tel.ra[others][:, None], tel.dec[others][:, None], times, sc)  # (fields, times)
    seen = ((alt >= np.degrees(np.arcsin(1 / 1.95))) & (sun <= sc.max_sun_alt_deg - 1)).any(axis=1)
    assert not seen.any(), tel.ids[others[seen]]
    # The selection is the greedy one over the observable fields.
    sel = o.ranked.selected
    assert sel.any() and np.all(np.diff(o.ranked.marginal) <= 1e-12)
    assert o.ranked.cumprob[sel][-1] <= every.cumprob[every.selected][-1] + 1e-12


@pytest.fixture(scope="module")
def processed(setting):
    cfg, alert, _, _ = setting
    cfg = dataclasses.replace(cfg, plan=dataclasses.replace(cfg.plan, enabled=False),
                              targets=dataclasses.replace(cfg.targets, catalogs=()), coverages=())
    return process_alert(alert, "S250720j", cfg)


@pytest.mark.shared_data
@pytest.mark.parametrize("role", ["gw", "combined"])
def test_s250720j_fields_product_is_site_aware(setting, processed, role: str) -> None:
    """The stored ranked-fields product (what ``targets?kind=fields`` serves)."""
    import json

    cfg = setting[0]
    sm = next(m for m in processed.skymaps if m.role == role)
    prods = [p for p in sm.products if p.kind == "fields"]
    assert [p.name for p in prods] == ["ZTF"]  # one list per telescope, as before
    doc = json.loads(prods[0].data)
    assert doc["columns"][:9] == ["rank", "field_id", "ra", "dec", "prob", "marginal_prob", "cumprob",
                                  "selected", "s_region"]
    assert doc["rows"]
    check_rows_observable(doc["rows"], cfg.sites[0])  # what the issue found: fields Palomar never sees
    assert {"site", "windows_Palomar"} <= set(doc["columns"]) and doc["provenance"]["sites"] == "Palomar"
