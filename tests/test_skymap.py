"""Reading sky maps: every real map, both read paths, flat maps, bad input."""

from __future__ import annotations

import dataclasses
import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from gwfollow.kernels.healpix import uniq_to_order_ipix

from gwfollow import read_skymap
from gwfollow.config import packaged_defaults
from gwfollow.errors import (
    CorruptSkyMapError,
    InvalidCellsError,
    InvalidValueError,
    MissingColumnError,
    NormalizationError,
    SkyMapError,
    SkyMapWarning,
    UnsupportedSkyMapError,
)

from .conftest import shared_files, shared_path
from .strategies import multiorder_fits_bytes, random_skymap_arrays

ALL_MAPS = shared_files("skymaps")


def _expand_to_flat(sm, order: int, values: np.ndarray) -> np.ndarray:
    """Rasterise multi-order cell values to a flat NESTED map at ``order``."""
    o, p = uniq_to_order_ipix(sm.uniq)
    out = np.empty(12 * 4**order)
    for oo in np.unique(o):
        sel = o == oo
        k = 4 ** (order - oo)
        idx = (p[sel][:, None] * k + np.arange(k)).ravel()
        out[idx] = np.repeat(values[sel], k)
    return out


@pytest.mark.parametrize("path", ALL_MAPS, ids=[p.name for p in ALL_MAPS])
def test_every_real_map_reads_and_both_paths_agree(path) -> None:
    fast = read_skymap(path)
    slow = read_skymap(path, reader="astropy")
    assert np.array_equal(fast.uniq, slow.uniq)
    assert np.array_equal(fast.probdensity, slow.probdensity)
    assert fast.has_distance == slow.has_distance
    for col in ("distmu", "distsigma", "distnorm"):
        a, b = getattr(fast, col), getattr(slow, col)
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)
    assert fast.meta == slow.meta
    assert fast.sha256 == slow.sha256 and len(fast.sha256) == 64
    assert abs(fast.meta.prob_sum - 1) < 1e-6


@pytest.mark.parametrize("path", [p for p in ALL_MAPS if not p.name.endswith("multiorder.fits") and "slim" not in p.name],
                         ids=[p.name for p in ALL_MAPS if not p.name.endswith("multiorder.fits") and "slim" not in p.name])
def test_flat_maps_convert_without_loss(path) -> None:
    import healpy as hp
    from ligo.skymap.io import read_sky_map

    sm = read_skymap(path)
    assert sm.meta.ordering in ("NESTED", "RING")
    prob, meta = read_sky_map(str(path), nest=True, distances=False)
    order = int(np.log2(hp.npix2nside(prob.size)))
    dens = _expand_to_flat(sm, order, sm.probdensity)
    # density per sr back to probability per pixel: exact up to one rounding.
    np.testing.assert_allclose(dens * 4 * np.pi / prob.size, prob.astype(np.float64), rtol=5e-16, atol=0)
    assert len(sm) <= prob.size


def test_slim_nside2048_map_collapses() -> None:
    p = shared_path("skymaps", "MS181101ab_bayestar.slim.fits.gz")
    sm = read_skymap(p)
    ref = read_skymap(shared_path("skymaps", "MS181101ab_bayestar.multiorder.fits"))
    assert sm.meta.nside == 2048 and len(sm) == len(ref)
    assert np.array_equal(np.sort(sm.uniq), np.sort(ref.uniq))


def test_metadata_of_a_real_map() -> None:
    sm = read_skymap(shared_path("skymaps", "S190814bv_bayestar.multiorder.fits"))
    m = sm.meta
    assert m.object_id == "G347305"
    assert m.event_time.startswith("2019-08-14T21:10:39")
    assert m.instruments == ("H1", "L1", "V1")
    assert m.creator == "BAYESTAR"
    assert m.ordering == "NUNIQ" and m.moc_order == 11
    assert m.distmean == pytest.approx(267, rel=0.1)
    assert m.event_mjd == pytest.approx(58709.882, abs=1e-3)
    assert sm.has_distance


def test_sources_path_bytes_fileobj_gzip(sim_path, sim_bytes) -> None:
    a = read_skymap(sim_path)
    b = read_skymap(sim_bytes)
    c = read_skymap(io.BytesIO(sim_bytes))
    d = read_skymap(gzip.compress(sim_bytes))
    for x in (b, c, d):
        assert np.array_equal(a.uniq, x.uniq) and np.array_equal(a.probdensity, x.probdensity)
    assert a.sha256 == b.sha256 != d.sha256


def _collapsed_cells(prob: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the coarsest multi-order cells of a flat NESTED map, sorted by UNIQ.

    Four sibling cells that are each whole and of equal probability merge
    into their parent, level by level up to order 0.  Densities per sr (a
    merged cell has the density of its flat pixels).
    """
    values, whole = prob.copy(), np.ones(prob.size, dtype=bool)
    area = 4 * np.pi / prob.size
    out_u, out_d = [], []
    for o in range(order, -1, -1):
        if o == 0:
            merge = np.zeros(values.size // 4, dtype=bool)
        else:
            v4, w4 = values.reshape(-1, 4), whole.reshape(-1, 4)
            merge = w4.all(1) & (v4 == v4[:, :1]).all(1)
        keep = whole & ~np.repeat(merge, 4) if o > 0 else whole
        ipix = np.flatnonzero(keep)
        out_u.append(4 * 4**o + ipix)
        out_d.append(values[ipix] / area)
        if o > 0:
            values, whole = values.reshape(-1, 4)[:, 0], merge
    u, d = np.concatenate(out_u), np.concatenate(out_d)
    s = np.argsort(u)
    return u[s], d[s]


def test_flat_ring_and_vector_columns_round_trip() -> None:
    import healpy as hp

    uniq, dens = random_skymap_arrays(5, max_order=4, n_splits=60, ties=False)
    order = 5
    o, p = uniq_to_order_ipix(uniq)
    flat = np.empty(12 * 4**order)
    for oo in np.unique(o):
        sel = o == oo
        k = 4 ** (order - oo)
        flat[(p[sel][:, None] * k + np.arange(k)).ravel()] = np.repeat(dens[sel], k)
    prob = flat * 4 * np.pi / flat.size
    nside = 2**order
    ring = prob[hp.ring2nest(nside, np.arange(prob.size))]
    results = []
    for ordering, values, fmt in (("NESTED", prob, "D"), ("RING", ring, "D"), ("RING", ring, "1024D")):
        if fmt == "1024D":
            col = fits.Column(name="PROBABILITY", format=fmt, array=values.reshape(-1, 1024))
        else:
            col = fits.Column(name="PROB", format=fmt, array=values)
        hdu = fits.BinTableHDU.from_columns([col])
        hdu.header.update(PIXTYPE="HEALPIX", ORDERING=ordering, NSIDE=nside, INDXSCHM="IMPLICIT", OBJECT="X")
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
        sm = read_skymap(buf.getvalue())
        results.append(sm)
        back = np.empty(prob.size)
        so, sp = uniq_to_order_ipix(sm.uniq)
        for oo in np.unique(so):
            sel = so == oo
            k = 4 ** (order - oo)
            back[(sp[sel][:, None] * k + np.arange(k)).ravel()] = np.repeat(sm.probdensity[sel], k)
        np.testing.assert_allclose(back * 4 * np.pi / back.size, prob, rtol=1e-15)
    # Uniform blocks of four siblings collapse, recursively: the generating
    # cells, except where complete sibling sets share a density (the zeros).
    ref_uniq, ref_dens = _collapsed_cells(prob, order)
    got = np.argsort(results[0].uniq)
    assert np.array_equal(results[0].uniq[got], ref_uniq)
    np.testing.assert_allclose(results[0].probdensity[got], ref_dens, rtol=1e-15)
    merged = np.setdiff1d(uniq, ref_uniq)
    assert np.all(dens[np.isin(uniq, merged)] == 0)  # only zero cells merged beyond the generating ones
    assert np.array_equal(results[0].uniq, results[1].uniq) and np.array_equal(results[1].uniq, results[2].uniq)


# ------------------------------------------------------------------ bad input


def _good() -> tuple[np.ndarray, np.ndarray]:
    return random_skymap_arrays(11, max_order=5, n_splits=50, ties=False)


def test_truncated_fits(sim_bytes) -> None:
    for cut in (100, 2880 * 2 + 10, len(sim_bytes) // 2):
        with pytest.raises(CorruptSkyMapError, match="truncated") as ei:
            read_skymap(sim_bytes[:cut], name="alert.fits")
        assert "alert.fits" in str(ei.value)


def test_not_fits_and_corrupt_gzip(sim_bytes) -> None:
    with pytest.raises(CorruptSkyMapError, match="not a FITS"):
        read_skymap(b"hello world" * 400)
    gz = gzip.compress(sim_bytes)
    with pytest.raises(CorruptSkyMapError, match="gzip"):
        read_skymap(gz[: len(gz) // 2])
    bad = bytearray(gz)
    bad[len(bad) // 2 : len(bad) // 2 + 64] = b"\x00" * 64
    with pytest.raises(CorruptSkyMapError):
        read_skymap(bytes(bad))


def test_missing_column_names_column_and_file() -> None:
    uniq, dens = _good()
    from astropy.io import fits as f

    hdu = f.BinTableHDU.from_columns([f.Column(name="UNIQ", format="K", array=uniq),
                                      f.Column(name="PROBDENS", format="D", array=dens)])
    hdu.header.update(ORDERING="NUNIQ", PIXTYPE="HEALPIX")
    buf = io.BytesIO()
    f.HDUList([f.PrimaryHDU(), hdu]).writeto(buf)
    with pytest.raises(MissingColumnError) as ei:
        read_skymap(buf.getvalue(), name="x.fits")
    assert ei.value.column == "PROBDENSITY" and "x.fits" in str(ei.value) and "PROBDENS" in str(ei.value)
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, ValueError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_nan_inf_negative_density(bad: float) -> None:
    uniq, dens = _good()
    dens = dens.copy()
    dens[7] = bad
    with pytest.raises(InvalidValueError, match="row 7") as ei:
        read_skymap(multiorder_fits_bytes(uniq, dens))
    assert ei.value.column == "PROBDENSITY"


def test_invalid_and_overlapping_uniq() -> None:
    uniq, dens = _good()
    u = uniq.copy()
    u[3] = 2
    with pytest.raises(InvalidCellsError, match="row 3"):
        read_skymap(multiorder_fits_bytes(u, dens))
    u = uniq.copy()
    o, p = uniq_to_order_ipix(u)
    i = int(np.argmax(o))  # replace a deep cell by its parent: overlaps its siblings
    u[i] = 4 * 4 ** (o[i] - 1) + p[i] // 4
    with pytest.raises(InvalidCellsError, match="overlaps"):
        read_skymap(multiorder_fits_bytes(u, dens))


def test_normalisation_error_and_warning() -> None:
    uniq, dens = _good()
    with pytest.raises(NormalizationError, match="sum to 2"):
        read_skymap(multiorder_fits_bytes(uniq, dens * 2))
    with pytest.warns(SkyMapWarning, match="deviation"):
        sm = read_skymap(multiorder_fits_bytes(uniq, dens * (1 + 1e-4)))
    assert sm.meta.warnings and "deviation" in sm.meta.warnings[0]
    loose = dataclasses.replace(packaged_defaults().skymap, norm_tolerance=5.0, norm_warning=5.0)
    assert read_skymap(multiorder_fits_bytes(uniq, dens * 2), config=loose).meta.prob_sum == pytest.approx(2)


def test_wrong_ordering_and_no_table() -> None:
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="PROB", format="D", array=np.full(768, 1 / 768))])
    hdu.header.update(ORDERING="WEIRD")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    with pytest.raises(UnsupportedSkyMapError, match="ORDERING is WEIRD"):
        read_skymap(buf.getvalue())
    buf = io.BytesIO()
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(buf)
    with pytest.raises(UnsupportedSkyMapError, match="no binary table"):
        read_skymap(buf.getvalue())


def test_flat_map_with_wrong_pixel_count() -> None:
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="PROB", format="D", array=np.full(700, 1 / 700))])
    hdu.header.update(ORDERING="NESTED", NSIDE=8)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    with pytest.raises(InvalidCellsError, match="700 pixels"):
        read_skymap(buf.getvalue())


def test_size_limit() -> None:
    uniq, dens = _good()
    data = gzip.compress(multiorder_fits_bytes(uniq, dens))
    with pytest.raises(SkyMapError, match="MiB"):
        read_skymap(data, config=dataclasses.replace(packaged_defaults().skymap, max_size_mib=0.001))


def test_missing_file() -> None:
    with pytest.raises(SkyMapError, match="no such file"):
        read_skymap("/nonexistent/map.fits")
