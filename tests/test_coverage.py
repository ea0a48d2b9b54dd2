"""Coverages: every shared MOC file against mocpy, the MOCServer cache, probabilities, pointings."""

from __future__ import annotations

import asyncio
import csv

import astropy.units as u
import numpy as np
import pytest
from aiohttp import web
from astropy.coordinates import Angle, Latitude, Longitude
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from gwfollow.kernels import healpix as khp
from gwfollow.kernels import ranges as kr
from mocpy import MOC, STMOC, TimeMOC
from mocpy.tmoc import microseconds_to_times, times_to_microseconds

from gwfollow import read_skymap
from gwfollow.errors import FetchError, GwfollowError
from gwfollow.regions.coverage import (
    Coverage,
    CoverageError,
    SpaceTimeRanges,
    coverage_probability,
    load_coverage,
    remaining_probability,
)
from gwfollow.regions.moc import (
    credible_ranges,
    moc_from_ranges,
    probability_in_ranges,
    ranges_area_deg2,
    ranges_of,
)
from gwfollow.regions.mocserver import (
    coverage_from_mocserver,
    coverage_from_mocserver_async,
    mocserver_cache_path,
    mocserver_query,
)
from gwfollow.regions.timeaxis import times_to_us, us_to_times
from gwfollow.targets.fields import (
    ZTF_FOV,
    FieldOfView,
    field_footprint_ranges,
    pointings_to_stmoc,
    read_field_grid,
)

from .conftest import shared_files, shared_path

# Every MOC of ../shared/data/mocs (SOURCES.md) and its kind.
MOC_KINDS = {
    "CDS-I-125A-catalog_MOC.fits": "space",
    "HST_SDSSg_TMoc.fits": "time",
    "MOC2.0_SMOC.fits": "space",
    "MOC2.0_STMOC.fits": "spacetime",
    "MOC2.0_STMoc-basic.fits": "spacetime",
    "MOC2.0_TMOC.fits": "time",
    "MOC2.0_smoc.ascii.txt": "space",
    "MOC2.0_stmoc.ascii.txt": "spacetime",
    "MOC2.0_tmoc.ascii.txt": "time",
    "MOC_0.9_bayestar.multiorder.fits": "space",
    "P-SDSS9-r.moc.fits": "space",
    "STMOC_XMMLog.fits": "spacetime",
    "STMoc-DECaLS-g.v1.fits": "spacetime",
    "STMoc-DECaLS-g.v2.fits": "spacetime",
    "V_147_sdss12.moc.fits": "space",
    "glimpse.moc.json": "space",
    "sdss_moc.range.fits": "space",
    "xmm_inter_2mass.stmoc.fits": "spacetime",
}
SDSS = ("P-SDSS9-r.moc.fits", "V_147_sdss12.moc.fits", "sdss_moc.range.fits")
NPIX29 = 12 * 4**29


def _moc(name: str):
    return shared_path("mocs", name)


def _fmt(name: str) -> str:
    return "fits" if name.endswith(".fits") else "json" if name.endswith(".json") else "ascii"


def _mocpy_load(name: str):
    cls = {"space": MOC, "time": TimeMOC, "spacetime": STMOC}[MOC_KINDS[name]]
    return cls.load(str(_moc(name)), format=_fmt(name))


def _tmoc(t0: int, t1: int) -> TimeMOC:
    return TimeMOC.from_depth61_ranges(61, np.array([[t0, t1]], dtype=np.uint64))


def _windows(st: SpaceTimeRanges) -> list[tuple[int, int]]:
    """Windows that exercise an ST-MOC: single ranges, straddles, a gap, everything."""
    tr = st.time_ranges
    n = tr.shape[0]
    out = [(int(tr[0, 0]), int(tr[0, 1])), (int(tr[-1, 0]), int(tr[-1, 1])),
           (max(0, int(tr[0, 0]) - 10**6), int(tr[-1, 1]) + 10**6)]
    mid = n // 2
    out.append((int(tr[mid, 0]) + 1, int(tr[min(n - 1, mid + 2), 1])))  # cuts into ranges
    if n > 1:
        out.append((int(tr[0, 1]), int(tr[1, 0])))  # the gap after the first range (may be empty)
        out.append((int(tr[0, 1]) - 1, int(tr[1, 0]) + 1))  # touches both by 1 us
    return [(a, b) for a, b in out if b > a]


def _table(sm) -> Table:
    return Table({"UNIQ": sm.uniq, "PROBDENSITY": sm.probdensity})


@pytest.fixture(scope="module")
def s190814bv():
    return read_skymap(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))


@pytest.fixture(scope="module")
def s190425z():
    return read_skymap(shared_path("skymaps", "S190425z_bayestar.fits.gz"))


# --------------------------------------------------------------------------- files


def test_every_shared_moc_is_listed() -> None:
    present = {p.name for p in shared_files("mocs")}
    assert present <= set(MOC_KINDS), f"new MOC files to add to MOC_KINDS: {present - set(MOC_KINDS)}"


@pytest.mark.parametrize("reader", ["auto", "direct"])
@pytest.mark.parametrize("name", sorted(MOC_KINDS))
def test_every_file_loads_and_agrees_with_mocpy(name: str, reader: str) -> None:
    cov = load_coverage(_moc(name), reader=reader)
    assert cov.kind == MOC_KINDS[name]
    assert cov.reader == ("mocpy" if reader == "auto" else "direct")  # mocpy reads every shared file
    assert cov.source == str(_moc(name))
    ref = _mocpy_load(name)
    if cov.kind == "space":
        assert kr.is_canonical(cov.ranges)
        assert np.array_equal(cov.ranges, ranges_of(ref))
        assert cov.data_order <= cov.max_order <= 29
    elif cov.kind == "time":
        assert kr.is_canonical(cov.time_ranges)
        assert np.array_equal(cov.time_ranges, kr.normalize(ref.to_depth61_ranges.astype(np.int64)))
        assert cov.max_order == ref.max_order
    else:
        st = cov.spacetime
        assert np.all(st.time_ranges[1:, 0] >= st.time_ranges[:-1, 1])  # sorted, disjoint
        assert (cov.time_order, cov.max_order) == ref.max_depth
        all_times = ref.query_by_space(MOC.from_string("0/0-11")).to_depth61_ranges.astype(np.int64)
        assert np.array_equal(st.time_coverage(), kr.normalize(all_times))
        for t0, t1 in _windows(st):
            mine = st.space_between(t0, t1)
            assert kr.is_canonical(mine)
            assert np.array_equal(mine, ranges_of(ref.query_by_time(_tmoc(t0, t1)))), (t0, t1)


def test_quirky_files() -> None:
    # MOCORDER=29 declared, data at order 10, 32-bit UNIQ: declared and needed orders both kept.
    sdss9 = load_coverage(_moc("P-SDSS9-r.moc.fits"), reader="direct")
    assert (sdss9.max_order, sdss9.data_order, sdss9.name) == (29, 10, "P-SDSS9-r")
    assert ranges_area_deg2(sdss9.ranges) == pytest.approx(14951.6, abs=0.1)
    # NUNIQ values in a column called NPIX.
    v147 = load_coverage(_moc("V_147_sdss12.moc.fits"), reader="direct")
    assert ranges_area_deg2(v147.ranges) == pytest.approx(14520.3, abs=0.1)
    # A RANGE-ordered T-MOC whose column is called UNIQ.
    hst = load_coverage(_moc("HST_SDSSg_TMoc.fits"), reader="direct")
    lo, hi = us_to_times([hst.time_ranges[0, 0], hst.time_ranges[-1, 1]]).iso
    assert lo.startswith("2002-04-01") and hi.startswith("2017-02-27")
    # Pre-2.0 keywords (MOC=SPACETIME, ORDERING=RANGE29, TORDER, negated times) = the 2.0 file.
    v1 = load_coverage(_moc("STMoc-DECaLS-g.v1.fits"), reader="direct").spacetime
    v2 = load_coverage(_moc("STMoc-DECaLS-g.v2.fits"), reader="direct").spacetime
    for a in ("time_ranges", "block_of", "space_offsets", "space_ranges"):
        assert np.array_equal(getattr(v1, a), getattr(v2, a)), a
    # Column PIXELS, no problem; time span as documented.
    xmm = load_coverage(_moc("STMOC_XMMLog.fits"), reader="direct")
    assert (xmm.max_order, xmm.time_order) == (17, 33)
    span = us_to_times([xmm.spacetime.time_ranges[0, 0], xmm.spacetime.time_ranges[-1, 1]]).iso
    assert span[0].startswith("2000-01-17") and span[1].startswith("2019-12-08")
    # The ASCII forms of the MOC 2.0 examples equal their FITS forms.
    for txt, fit in (("MOC2.0_smoc.ascii.txt", "MOC2.0_SMOC.fits"), ("MOC2.0_tmoc.ascii.txt", "MOC2.0_TMOC.fits")):
        a, b = load_coverage(_moc(txt), reader="direct"), load_coverage(_moc(fit), reader="direct")
        assert np.array_equal(a.ranges if a.kind == "space" else a.time_ranges,
                              b.ranges if b.kind == "space" else b.time_ranges)
        assert a.max_order == b.max_order
    a = load_coverage(_moc("MOC2.0_stmoc.ascii.txt"), reader="direct").spacetime
    b = load_coverage(_moc("MOC2.0_STMOC.fits"), reader="direct").spacetime
    assert np.array_equal(a.time_ranges, b.time_ranges) and np.array_equal(a.space_ranges, b.space_ranges)
    assert a.time_ranges.tolist() == [[1, 2], [3, 4], [5, 6], [50, 51], [52, 53]]


def test_fallback_when_mocpy_panics(monkeypatch) -> None:
    import gwfollow.regions.mocio as cov_mod

    class PanicException(BaseException):  # what pyo3 raises when mocpy's Rust core panics
        pass

    def panic(*args, **kwargs):
        raise PanicException("index out of bounds: the len is 29 but the index is 61")

    monkeypatch.setattr(cov_mod, "_decode_with_mocpy", panic)
    cov = load_coverage(_moc("STMoc-DECaLS-g.v1.fits"))
    assert cov.reader == "direct" and cov.spacetime.n_blocks == 1845

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cov_mod, "_decode_with_mocpy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_coverage(_moc("MOC2.0_SMOC.fits"))


def _bintable_file(path, columns, cards, image_first=False):
    hdu = fits.BinTableHDU.from_columns(columns)
    for k, v in cards.items():
        hdu.header[k] = v
    extra = [fits.ImageHDU(np.zeros((2, 2)))] if image_first else []
    fits.HDUList([fits.PrimaryHDU(), *extra, hdu]).writeto(path)
    return path


def test_files_only_the_direct_reader_reads(tmp_path) -> None:
    uniq = np.array([4 * 4**5 + 10, 4 * 4**6 + 100], dtype=np.int64)
    expect = [[10 << 48, 11 << 48], [100 << 46, 101 << 46]]
    nuniq = {"ORDERING": "NUNIQ", "MOCORDER": 6}
    files = [
        # The MOC table is not the first extension.
        _bintable_file(tmp_path / "a.fits", [fits.Column(name="UNIQ", format="K", array=uniq)], nuniq, True),
        # An extra column beside the cells.
        _bintable_file(tmp_path / "b.fits", [fits.Column(name="UNIQ", format="K", array=uniq),
                                             fits.Column(name="NOTE", format="E", array=np.zeros(2))], nuniq),
        # A pre-2.0 S-MOC in RANGE29 ordering (mocpy takes RANGE29 for an ST-MOC).
        _bintable_file(tmp_path / "c.fits", [fits.Column(name="RANGE", format="K", array=np.ravel(expect))],
                       {"MOC": "SPACE", "ORDERING": "RANGE29", "MOCORDER": 6}),
    ]
    for p in files:
        with pytest.raises(BaseException):  # noqa: B017 - mocpy's own error types vary
            MOC.load(str(p))
        cov = load_coverage(p)
        assert (cov.reader, cov.kind, cov.max_order, cov.ranges.tolist()) == ("direct", "space", 6, expect), p.name


def test_gzipped_fits(tmp_path) -> None:
    import gzip

    p = tmp_path / "smoc.fits.gz"
    p.write_bytes(gzip.compress(_moc("MOC_0.9_bayestar.multiorder.fits").read_bytes()))
    cov = load_coverage(p)
    assert cov.reader == "direct" and cov.name == "smoc"
    assert np.array_equal(cov.ranges, load_coverage(_moc("MOC_0.9_bayestar.multiorder.fits")).ranges)


def test_text_mocs_without_header(tmp_path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("20/5-6 22/\n")  # orders <= 29: space unless told
    assert load_coverage(p).kind == "space"
    t = load_coverage(p, kind="time")
    assert t.time_ranges.tolist() == [[5 << 41, 7 << 41]] and t.max_order == 22
    j = tmp_path / "st.json"
    j.write_text('[{"t": {"61": [1, 2]}, "s": {"3": [1]}}, {"t": {"61": [2]}, "s": {"4": [0]}}]')
    st = load_coverage(j).spacetime  # overlapping time in two entries: merged
    assert st.time_ranges.tolist() == [[1, 2], [2, 3]]
    assert st.space_between(2, 3).tolist() == [[0, 1 << 50], [1 << 52, 2 << 52]]


@pytest.mark.parametrize(
    "content, kind, message",
    [
        (b"", None, "empty file"),
        (b"\xff\xfe\x00garbage", None, "neither FITS nor UTF-8"),
        (b"3/x", None, "unexpected"),
        (b"3/100000", None, "not a HEALPix cell"),
        (b"30/1", "space", "not in 0..29"),
        (b'{"a": [1]}', None, "not an order"),
        (b"{oops", None, "not valid JSON"),
        (b"SIMPLE  =                    T" + b" " * 50, None, "not a readable FITS"),
    ],
)
def test_bad_files_raise_coverage_error(tmp_path, content: bytes, kind, message: str) -> None:
    p = tmp_path / "bad.moc"
    p.write_bytes(content)
    with pytest.raises(CoverageError, match=message) as info:
        load_coverage(p, kind=kind)
    assert str(p) in str(info.value) and isinstance(info.value, (ValueError, GwfollowError))


def test_bad_fits_cells_and_kind_mismatch(tmp_path) -> None:
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="UNIQ", format="K", array=np.array([4, 1]))])
    hdu.header["ORDERING"] = "NUNIQ"
    p = tmp_path / "bad.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(p)
    with pytest.raises(CoverageError, match="not a NUNIQ cell"):
        load_coverage(p)
    with pytest.raises(CoverageError, match="not a time one"):
        load_coverage(_moc("MOC2.0_SMOC.fits"), kind="time")
    truncated = tmp_path / "cut.fits"
    truncated.write_bytes(_moc("P-SDSS9-r.moc.fits").read_bytes()[:10000])
    with pytest.raises(CoverageError, match="truncated"):
        load_coverage(truncated)
    with pytest.raises(CoverageError, match="no such file"):
        load_coverage(tmp_path / "absent.fits")


def test_time_axis() -> None:
    # The MOC 2.0 time axis: microseconds of TCB Julian date.
    assert times_to_us(Time(2451545.0, format="jd", scale="tcb"))[0] == 2451545 * 86400 * 10**6
    assert times_to_us(Time(2451545.25, format="jd", scale="tcb"))[0] == 2451545 * 86400 * 10**6 + 21600 * 10**6
    t = Time(["2019-04-25T08:18:05.017553", "2000-01-01T00:00:00", "2020-06-30T23:59:59.999999"], scale="utc")
    mine = times_to_us(t)
    assert np.all(np.abs((us_to_times(mine) - t).sec) < 1e-6)
    # mocpy's forward conversion lags by up to ~1.3 ms (see times_to_us); its inverse is exact to ~30 us.
    assert np.all(np.abs(mine - times_to_microseconds(t).astype(np.int64)) < 1500)
    assert np.all(np.abs((microseconds_to_times(mine) - t).sec) < 5e-5)


# --------------------------------------------------------------------------- space-time structure


def test_overlapping_blocks_are_split_like_brute_force() -> None:
    rng = np.random.default_rng(5)
    cells = [kr.normalize(khp.uniq_to_ranges(rng.integers(16, 64, size=3).astype(np.int64))) for _ in range(12)]
    times = rng.integers(0, 200, size=(12, 2))
    times = np.sort(times, axis=1) + np.array([0, 1])
    st = SpaceTimeRanges.from_blocks((t.reshape(1, 2), c) for t, c in zip(times, cells))
    assert np.all(st.time_ranges[1:, 0] >= st.time_ranges[:-1, 1])
    stmoc = Coverage("random", "spacetime", "<test>", 29, time_order=61, spacetime=st).to_mocpy()
    for k in range(200):
        a = int(rng.integers(0, 205))
        b = a + int(rng.integers(1, 40))
        hit = [c for (s, e), c in zip(times, cells) if s < b and e > a]
        expect = kr.normalize(np.concatenate(hit)) if hit else np.empty((0, 2), np.int64)
        assert np.array_equal(st.space_between(a, b), expect), (a, b)
        if k % 10 == 0:  # the MOC 2.0 FITS written for mocpy lists entries in time order
            assert np.array_equal(ranges_of(stmoc.query_by_time(_tmoc(a, b))), expect), (a, b)


def test_round_trip_through_mocpy_and_fits(tmp_path) -> None:
    for name in ("xmm_inter_2mass.stmoc.fits", "HST_SDSSg_TMoc.fits", "CDS-I-125A-catalog_MOC.fits"):
        cov = load_coverage(_moc(name), reader="direct")
        assert cov.to_mocpy() == _mocpy_load(name), name
        p = tmp_path / name
        p.write_bytes(cov.to_fits_bytes())
        for reader in ("auto", "direct"):
            again = load_coverage(p, reader=reader)
            assert again.kind == cov.kind and again.max_order == cov.max_order
            assert again.to_mocpy() == cov.to_mocpy()


# --------------------------------------------------------------------------- probability


@pytest.mark.parametrize("name", SDSS)
def test_probability_equals_mocpy(s190814bv, name: str) -> None:
    cov = load_coverage(_moc(name))
    ref = _mocpy_load(name)
    (p_ref,) = MOC.probabilities_in_multiordermap([ref], _table(s190814bv))
    res = coverage_probability(s190814bv, cov)
    assert res.probability > 0.01
    assert res.probability == pytest.approx(p_ref, rel=1e-10)
    assert res.coverage_area_deg2 == pytest.approx(ref.sky_fraction * 4 * np.pi * (180 / np.pi) ** 2, rel=1e-12)
    assert res.time_fraction is None and res.area_deg2 is None
    # The 90% credible region inside the coverage: area and probability.
    (r90,) = credible_ranges(s190814bv, [0.9])
    res = coverage_probability(s190814bv, cov, region=r90)
    inter = ref.intersection(moc_from_ranges(r90, 29))
    (p_inter,) = MOC.probabilities_in_multiordermap([inter], _table(s190814bv))
    assert res.region_probability == pytest.approx(p_inter, rel=1e-10)
    assert res.area_deg2 == pytest.approx(ranges_area_deg2(ranges_of(inter)), rel=1e-12)
    assert 0 < res.area_deg2 < ranges_area_deg2(r90)


def test_spacetime_window(s190814bv) -> None:
    name = "STMOC_XMMLog.fits"
    cov = load_coverage(_moc(name))
    ref = _mocpy_load(name)
    table = _table(s190814bv)
    # Default window: the event (2019-08-14 21:10:39 UTC) and one day after.
    res = coverage_probability(s190814bv, cov)
    t0, t1 = times_to_us(Time([res.start, res.end], scale="utc"))
    assert res.start.startswith("2019-08-14T21:10:39.0122")  # DATE-OBS 2019-08-14T21:10:39.012255
    assert (Time(res.end) - Time(res.start)).sec == pytest.approx(86400, abs=2e-6)
    (p_ref,) = MOC.probabilities_in_multiordermap([ref.query_by_time(_tmoc(t0, t1))], table)
    assert res.probability == pytest.approx(p_ref, rel=1e-10, abs=1e-15)
    # An explicit window around one observation, and one where XMM was not observing.
    tr = cov.spacetime.time_ranges
    k = int(np.argmax(tr[:-1, 1] - tr[:-1, 0]))  # the longest observation that has a successor
    a, b = us_to_times(tr[k]).utc
    res = coverage_probability(s190814bv, cov, a, b, region=credible_ranges(s190814bv, [0.9])[0])
    sky = ranges_of(ref.query_by_time(_tmoc(*times_to_us(Time([a, b])))))
    assert res.coverage_area_deg2 == pytest.approx(ranges_area_deg2(sky), rel=1e-12)
    assert res.probability == pytest.approx(probability_in_ranges(s190814bv, sky), rel=1e-12)
    assert 0.99 < res.time_fraction <= 1.0
    gap = us_to_times([tr[k, 1] + 1, tr[k + 1, 0] - 1]).utc if tr[k + 1, 0] - tr[k, 1] > 2 else None
    if gap is not None:
        empty = coverage_probability(s190814bv, cov, gap[0], gap[1])
        assert empty.probability == 0 and empty.time_fraction == 0 and empty.coverage_area_deg2 == 0
    with pytest.raises(CoverageError, match="empty time window"):
        coverage_probability(s190814bv, cov, "2019-08-15", "2019-08-14")
    with pytest.raises(CoverageError, match="must be an astropy Time"):
        coverage_probability(s190814bv, cov, 58709.88)  # a bare number: MJD? JD? refused
    with pytest.raises(CoverageError, match="cannot read start"):
        coverage_probability(s190814bv, cov, "yesterday")


def test_time_coverage_fraction(s190814bv) -> None:
    cov = load_coverage(_moc("HST_SDSSg_TMoc.fits"))
    start, end = "2002-04-01T00:00:00", "2002-04-08T00:00:00"
    res = coverage_probability(s190814bv, cov, start, end)
    assert res.probability is None and res.coverage_area_deg2 is None
    t0, t1 = times_to_us(Time([start, end], scale="utc"))
    inter = _mocpy_load("HST_SDSSg_TMoc.fits").intersection(_tmoc(t0, t1)).to_depth61_ranges.astype(np.int64)
    assert res.time_fraction == pytest.approx((inter[:, 1] - inter[:, 0]).sum() / (t1 - t0), rel=1e-12)
    assert 0 < res.time_fraction < 1


# --------------------------------------------------------------------------- fields and pointings


def test_field_of_view_geometry() -> None:
    r = field_footprint_ranges(150.0, 40.0, FieldOfView.rectangle(2.0, 6.0), order=11)
    lon = np.radians([150.0, 150.0, 150.0 + 0.9 / np.cos(np.radians(40)), 150.0 + 1.2 / np.cos(np.radians(40))])
    lat = np.radians([42.8, 43.3, 40.0, 40.0])
    assert kr.contains(r, khp.lonlat_to_nest(29, lon, lat)).tolist() == [True, False, True, False]
    disc = field_footprint_ranges(10.0, -30.0, FieldOfView.circle(2.0), order=12)
    assert ranges_area_deg2(disc) == pytest.approx(np.pi * 4.0, rel=0.02)
    with pytest.raises(CoverageError):
        FieldOfView.square(-1)
    with pytest.raises(CoverageError):
        FieldOfView("hexagon", 1, 1).validate()


def test_ztf_gw190425_pointings(s190425z) -> None:
    obs = shared_path("fields", "ZTF_GW190425_observation_data.csv")
    grid_path = shared_path("fields", "ZTF_Fields.txt")
    cov = pointings_to_stmoc(obs, grid_path, ZTF_FOV, order=10)  # its speed: benchmarks/bench_targets.py
    assert cov.kind == "spacetime" and cov.name == "ZTF_GW190425_observation_data"
    with open(obs, newline="") as fh:
        rows = list(csv.DictReader(fh))
    grid = read_field_grid(grid_path)
    fields = sorted({int(r["field_id"]) for r in rows})
    assert cov.spacetime.time_ranges.shape[0] == len(rows)  # 30 s exposures, none overlapping

    # Brute force: mocpy's own union of every executed field's footprint.
    boxes = [MOC.from_box(Longitude(grid[f][0] * u.deg), Latitude(grid[f][1] * u.deg), a=Angle(3.43 * u.deg),
                          b=Angle(3.43 * u.deg), angle=Angle(0 * u.deg), max_depth=10) for f in fields]
    union = boxes[0].union(*boxes[1:])
    everything = cov.spacetime.space_coverage()
    assert np.array_equal(everything, ranges_of(union))
    centres = np.radians(np.array([grid[f] for f in fields]))
    assert kr.contains(everything, khp.lonlat_to_nest(29, centres[:, 0], centres[:, 1])).all()

    (p_union,) = MOC.probabilities_in_multiordermap([union], _table(s190425z))
    covered = probability_in_ranges(s190425z, everything)
    assert 0 < covered < 1
    assert covered == pytest.approx(p_union, rel=1e-10)
    assert remaining_probability(s190425z, everything) == pytest.approx(1 - p_union, rel=1e-9)
    per_field = [probability_in_ranges(s190425z, field_footprint_ranges(*grid[f], ZTF_FOV, 10)) for f in fields]
    assert max(per_field) <= covered <= sum(per_field) + 1e-12

    # The first day after the event (the default window) saw part of it.
    day1 = coverage_probability(s190425z, cov)
    assert 0 < day1.probability <= covered + 1e-15
    n_day1 = sum(1 for r in rows if Time(r["obstime"]) < Time("2019-04-26T08:18:05.017553"))
    assert day1.time_fraction == pytest.approx(n_day1 * 30 / 86400, rel=1e-6)
    before = coverage_probability(s190425z, cov, "2019-04-25T00:00:00", "2019-04-25T08:18:00")
    assert before.probability == 0 and before.time_fraction == 0

    # Same answer through mocpy's ST-MOC.
    stmoc = cov.to_mocpy()
    t0, t1 = times_to_us(Time([day1.start, day1.end], scale="utc"))
    assert np.array_equal(cov.spacetime.space_between(t0, t1), ranges_of(stmoc.query_by_time(_tmoc(t0, t1))))


def test_pointing_rows_errors() -> None:
    grid = {1: (10.0, 20.0)}
    rows = [{"field_id": "1", "obstime": "2020-01-01T00:00:00", "exposure_time": "30"},
            {"ra": "11", "dec": "21", "obstime": "2020-01-01T00:00:10", "exposure_time": "60"}]
    cov = pointings_to_stmoc(rows, grid, FieldOfView.square(1.0), order=8)
    assert cov.spacetime.time_ranges.shape[0] == 3  # the second exposure overlaps the first
    with pytest.raises(CoverageError, match="not in the field grid"):
        pointings_to_stmoc([{**rows[0], "field_id": "2"}], grid, ZTF_FOV)
    with pytest.raises(CoverageError, match="exposure_time"):
        pointings_to_stmoc([{"field_id": "1", "obstime": "2020-01-01"}], grid, ZTF_FOV)
    with pytest.raises(CoverageError, match="not positive"):
        pointings_to_stmoc([{**rows[0], "exposure_time": "0"}], grid, ZTF_FOV)


# --------------------------------------------------------------------------- MOCServer


class FakeMocServer:
    """A local stand-in for the CDS MOCServer: a real aiohttp server on 127.0.0.1."""

    KNOWN = "CDS/I/125A"

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.mode = "ok"
        self.release = asyncio.Event()
        self.hanging = 0
        self.moc = shared_path("mocs", "CDS-I-125A-catalog_MOC.fits").read_bytes()
        self.empty = Coverage.from_ranges("empty", np.empty((0, 2), np.int64), 8).to_fits_bytes()

    async def query(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.query))
        if self.mode == "error":
            return web.Response(status=503, text="busy")
        if self.mode == "hang":
            self.hanging += 1
            try:
                await self.release.wait()  # until the test (or the fixture's teardown) releases it
            finally:
                self.hanging -= 1
        if self.mode == "html":
            return web.Response(text="<html>MocServer form</html>", content_type="text/html")
        if request.query.get("ID") != self.KNOWN:
            return web.Response(body=self.empty, content_type="application/fits")
        return web.Response(body=self.moc, content_type="application/fits")


@pytest.fixture
async def mocserver(aiohttp_server):
    fake = FakeMocServer()
    app = web.Application()
    app.router.add_get("/MocServer/query", fake.query)
    server = await aiohttp_server(app)
    fake.url = f"http://127.0.0.1:{server.port}/MocServer/query"
    yield fake
    fake.release.set()


async def test_mocserver_fetches_once_then_uses_cache(tmp_path, mocserver) -> None:
    cov = await coverage_from_mocserver_async("ivo://CDS/I/125A", tmp_path, base_url=mocserver.url)
    assert mocserver.calls == [{"ID": "CDS/I/125A", "get": "moc", "fmt": "fits", "order": "max",
                                "casesensitive": "true"}]
    local = load_coverage(_moc("CDS-I-125A-catalog_MOC.fits"))
    assert np.array_equal(cov.ranges, local.ranges) and cov.name == "ivo://CDS/I/125A"
    assert cov.source.startswith(mocserver.url)
    assert mocserver_cache_path(tmp_path, "CDS/I/125A").is_file()
    again = await coverage_from_mocserver_async("CDS/I/125A", tmp_path, base_url=mocserver.url)
    offline = await coverage_from_mocserver_async("CDS/I/125A", tmp_path, base_url=mocserver.url,
                                                  offline=True)
    assert len(mocserver.calls) == 1
    assert np.array_equal(again.ranges, local.ranges) and np.array_equal(offline.ranges, local.ranges)
    # The blocking form works from a thread without a loop, and refuses to run inside one.
    sync = await asyncio.to_thread(coverage_from_mocserver, "CDS/I/125A", tmp_path, base_url=mocserver.url,
                                   refresh=True)
    assert len(mocserver.calls) == 2 and np.array_equal(sync.ranges, local.ranges)
    with pytest.raises(CoverageError, match="running event loop"):
        coverage_from_mocserver("CDS/I/125A", tmp_path, base_url=mocserver.url)


async def test_mocserver_offline_without_cache(tmp_path, mocserver) -> None:
    with pytest.raises(CoverageError, match="offline and no cached copy"):
        await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url, offline=True)
    assert mocserver.calls == []


async def test_mocserver_unreadable_cache(tmp_path, mocserver) -> None:
    cache = mocserver_cache_path(tmp_path, mocserver.KNOWN)
    cache.write_bytes(b"SIMPLE  = garbage")
    with pytest.raises(CoverageError, match="unreadable"):
        await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url, offline=True)
    cov = await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url)
    assert len(mocserver.calls) == 1 and cov.ranges.shape[0] > 0
    assert load_coverage(cache).ranges.shape == cov.ranges.shape  # replaced by the fresh answer


async def test_mocserver_failures(tmp_path, mocserver) -> None:
    mocserver.mode = "error"
    with pytest.raises(CoverageError, match="no cached copy") as info:
        await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url, timeout_s=2,
                                            retries=1)
    assert isinstance(info.value.__cause__, FetchError) and info.value.__cause__.status == 503
    assert len(mocserver.calls) == 2 and not list(tmp_path.iterdir())
    # With a cached copy, a failed refresh falls back to it.
    mocserver.mode = "ok"
    await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url)
    mocserver.mode = "error"
    cov = await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, base_url=mocserver.url, refresh=True,
                                              retries=0)
    assert cov.ranges.shape[0] > 0
    # Answers that are not a MOC, or an empty MOC (unknown ID), are refused and not cached.
    mocserver.mode = "html"
    with pytest.raises(CoverageError, match="not a FITS MOC"):
        await coverage_from_mocserver_async("CDS/other", tmp_path, base_url=mocserver.url)
    mocserver.mode = "ok"
    with pytest.raises(CoverageError, match="empty MOC"):
        await coverage_from_mocserver_async("CDS/unknown", tmp_path, base_url=mocserver.url)
    assert not mocserver_cache_path(tmp_path, "CDS/unknown").exists()
    assert [p.name for p in tmp_path.iterdir()] == [mocserver_cache_path(tmp_path, mocserver.KNOWN).name]


async def test_mocserver_never_hangs(tmp_path, mocserver, unused_tcp_port) -> None:
    mocserver.mode = "hang"
    # The client gives up by its own time-out while the server still holds the
    # request (the outer wait_for only turns a regression into a failure, not a hang).
    with pytest.raises(CoverageError, match="no complete answer"):
        await asyncio.wait_for(coverage_from_mocserver_async(
            mocserver.KNOWN, tmp_path, base_url=mocserver.url, timeout_s=0.3, retries=0), 120)
    assert mocserver.hanging == 1 and not mocserver.release.is_set() and len(mocserver.calls) == 1
    mocserver.release.set()
    with pytest.raises(CoverageError, match="connection failed"):
        await coverage_from_mocserver_async(mocserver.KNOWN, tmp_path, timeout_s=2, retries=0,
                                            base_url=f"http://127.0.0.1:{unused_tcp_port}/MocServer/query")


def test_mocserver_query_parameters(tmp_path) -> None:
    assert mocserver_query("ivo://CDS/P/SDSS9/r", "spacetime", 9)["get"] == "stmoc"
    assert mocserver_query("CDS/P/SDSS9/r")["ID"] == "CDS/P/SDSS9/r"
    for bad in ("", "CDS/*", "CDS/a,CDS/b"):
        with pytest.raises(CoverageError, match="single MOCServer ID"):
            mocserver_query(bad)
    a, b = mocserver_cache_path(tmp_path, "CDS/a"), mocserver_cache_path(tmp_path, "CDS_a")
    assert a != b and a.parent == tmp_path
