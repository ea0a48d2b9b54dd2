"""Telescope fields: footprints, coarse candidate filter, greedy selection."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from gwfollow.kernels import ranges as kr
from mocpy import MOC

from gwfollow import read_skymap
from gwfollow.regions.moc import (
    credible_ranges,
    moc_from_ranges,
    probability_in_ranges,
    ranges_area_deg2,
)
from gwfollow.targets.fields import (
    ZTF_FOV,
    FieldOfView,
    FieldsError,
    Telescope,
    candidate_fields,
    field_footprint_ranges,
    rank_fields,
)

from .conftest import shared_path


def _mocpy_prob(sm, ranges) -> float:
    t = Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})
    return float(MOC.probabilities_in_multiordermap([moc_from_ranges(ranges)], t)[0])


def test_ztf_ranking_on_a_real_map() -> None:
    sm = read_skymap(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))
    ztf = Telescope.from_file("ZTF", shared_path("fields", "ZTF_Fields.txt"), ZTF_FOV)
    assert len(ztf) == 1778
    r = rank_fields(sm, ztf, target=0.9)
    t = r.table()
    assert t.colnames[:6] == ["rank", "field_id", "ra", "dec", "prob", "marginal_prob"]
    assert np.all(np.diff(r.cumprob) >= -1e-15) and r.cumprob[-1] <= 1 + 1e-12
    np.testing.assert_allclose(np.cumsum(r.marginal), r.cumprob, rtol=1e-9, atol=1e-12)
    assert r.prob[0] == pytest.approx(r.prob.max())
    sel = r.rows[r.selected]
    assert r.cumprob[r.selected][-1] >= 0.9 and (r.selected.sum() == 1 or r.cumprob[r.selected][-2] < 0.9)
    # Each field's probability and the union's, against mocpy.
    for k in range(min(5, len(r))):
        f = field_footprint_ranges(float(ztf.ra[r.rows[k]]), float(ztf.dec[r.rows[k]]), ZTF_FOV, 10)
        assert r.prob[k] == pytest.approx(_mocpy_prob(sm, f), rel=1e-9, abs=1e-14)
    union = np.empty((0, 2), dtype=np.int64)
    for row in sel:
        union = kr.union(union, field_footprint_ranges(float(ztf.ra[row]), float(ztf.dec[row]), ZTF_FOV, 10))
    assert r.cumprob[r.selected][-1] == pytest.approx(_mocpy_prob(sm, union), rel=1e-9)


def test_candidate_filter_misses_no_field() -> None:
    sm = read_skymap(shared_path("skymaps", "MS181101ab_bayestar.multiorder.fits"))
    tel = Telescope.from_file("ULTRASAT", shared_path("fields", "ULTRASAT_LCS_nonoverlapping_grid.csv"),
                              FieldOfView.circle(7.0))
    region = credible_ranges(sm, [0.999], "include")[0]
    cand = set(candidate_fields(tel, region))
    for row in range(len(tel)):
        f = field_footprint_ranges(float(tel.ra[row]), float(tel.dec[row]), tel.fov, 8)
        if kr.intersection(f, region).shape[0]:
            assert row in cand, row


def test_generated_grid_tiles_the_sky() -> None:
    tel = Telescope.generated("gen", FieldOfView.square(10.0))
    union = np.empty((0, 2), dtype=np.int64)
    for ra, dec in zip(tel.ra, tel.dec):
        union = kr.union(union, field_footprint_ranges(float(ra), float(dec), tel.fov, 7))
    assert ranges_area_deg2(union) > 0.999 * 4 * np.pi * (180 / np.pi) ** 2


def test_bad_target(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    with pytest.raises(FieldsError):
        rank_fields(sm, Telescope.generated("g", ZTF_FOV), target=0)
    r = rank_fields(sm, Telescope.generated("g", ZTF_FOV), max_fields=3)
    assert len(r) == 3 and probability_in_ranges(sm, np.empty((0, 2), dtype=np.int64)) == 0


@pytest.mark.parametrize("fov", [ZTF_FOV, FieldOfView.rectangle(3.0, 1.5, rotation_deg=30.0),
                                 FieldOfView.circle(1.2)])
def test_batched_footprints_equal_mocpy_one_by_one(fov) -> None:
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude

    from gwfollow.regions.moc import ranges_of
    from gwfollow.targets.fields import field_footprints

    rng = np.random.default_rng(4)
    ra = np.append(rng.uniform(0, 360, 40), [359.99, 0.0, 10.0])
    dec = np.append(rng.uniform(-89, 89, 40), [0.0, 89.9, -89.9])
    ra[5], dec[5] = ra[3], dec[3]  # a repeated field
    got = field_footprints(ra, dec, fov, 9)
    assert len(got) == len(ra) and got[5] is got[3]
    for a, d, r in zip(ra, dec, got):
        lon, lat = Longitude(a * u.deg), Latitude(d * u.deg)
        if fov.shape == "circle":
            ref = MOC.from_cone(lon, lat, radius=Angle(fov.radius_deg * u.deg), max_depth=9)
        else:
            ref = MOC.from_box(lon, lat, a=Angle(max(fov.width_deg, fov.height_deg) / 2 * u.deg),
                               b=Angle(min(fov.width_deg, fov.height_deg) / 2 * u.deg),
                               angle=Angle((fov.rotation_deg + (90.0 if fov.width_deg > fov.height_deg else 0.0))
                                           * u.deg), max_depth=9)
        assert np.array_equal(r, ranges_of(ref))
        assert not r.flags.writeable
    # Cached: the same arrays again, and single calls agree.
    again = field_footprints(ra[::-1], dec[::-1], fov, 9)
    assert all(x is y for x, y in zip(again, got[::-1]))
    assert field_footprint_ranges(ra[0], dec[0], fov, 9) is got[0]
    with pytest.raises(Exception, match="not a sky position"):
        field_footprints([10.0, 20.0], [0.0, 95.0], fov, 9)
