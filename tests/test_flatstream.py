"""Gzipped flat maps read as a stream: the same cells, values and errors as the in-memory reader."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from gwfollow import read_skymap
from gwfollow.errors import CorruptSkyMapError, InvalidValueError, SkyMapError
from gwfollow.kernels import flatmap as kflat
from gwfollow.skymaps import flatstream
from gwfollow.skymaps.flatstream import FlatCells, inflate_chunks, read_gzip_flat

from .conftest import shared_files
from .strategies import random_multiorder_cells

FLAT_GZ = [p for p in shared_files("skymaps", "*.fits.gz")]


def _flat_fits(values: dict[str, np.ndarray], ordering: str = "NESTED", fmt: str = "D") -> bytes:
    cols = [fits.Column(name=k, format=fmt, array=v) for k, v in values.items()]
    hdu = fits.BinTableHDU.from_columns(cols)
    nside = int(np.sqrt(next(iter(values.values())).size // 12))
    hdu.header.update(PIXTYPE="HEALPIX", ORDERING=ordering, NSIDE=nside, INDXSCHM="IMPLICIT", OBJECT="X")
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def _piecewise_map(seed: int, order: int, ncol: int) -> dict[str, np.ndarray]:
    """A flat map made of the cells of a random multi-order tiling, with ties and equal neighbours."""
    rng = np.random.default_rng(seed)
    uniq = random_multiorder_cells(rng, order, int(rng.integers(0, 80)))
    lv = (np.floor(np.log2(uniq // 4) / 2)).astype(np.int64)
    ipix = uniq - 4 * 4**lv
    levels = rng.exponential(1.0, int(rng.integers(1, 5)))  # few values: neighbours often equal
    prob = np.empty(12 * 4**order)
    dist = np.empty(12 * 4**order)
    for o, p, v, d in zip(lv, ipix, rng.choice(levels, uniq.size), rng.choice([10.0, 20.0], uniq.size)):
        k = 4 ** (order - o)
        prob[p * k:(p + 1) * k] = v / k
        dist[p * k:(p + 1) * k] = d
    prob /= prob.sum()
    out = {"PROB": prob}
    if ncol > 1:
        out.update(DISTMU=dist, DISTSIGMA=dist / 3, DISTNORM=1 / dist**2)
    return out


@given(st.integers(0, 10_000), st.integers(0, 5), st.sampled_from([1, 4]), st.sampled_from([8, 100, 1 << 20]))
@settings(max_examples=60, deadline=None)
def test_stream_equals_in_memory_reader(seed: int, order: int, ncol: int, chunk: int) -> None:
    data = _flat_fits(_piecewise_map(seed, order, ncol))
    ref = read_skymap(data)  # uncompressed: the in-memory path
    old = flatstream.CHUNK
    flatstream.CHUNK = chunk  # blocks that split groups of siblings and rows
    try:
        got = read_gzip_flat(gzip.compress(data), "x", 1 << 30)
    finally:
        flatstream.CHUNK = old
    assert isinstance(got, FlatCells)
    assert np.array_equal(got.uniq, ref.uniq)
    assert np.array_equal(got.probdensity, ref.probdensity)
    for c in ("DISTMU", "DISTSIGMA", "DISTNORM"):
        r = getattr(ref, c.lower())
        assert (r is None and c not in got.extra) or np.array_equal(got.extra[c], r)


@given(st.integers(0, 10_000), st.integers(0, 4))
@settings(max_examples=60, deadline=None)
def test_stream_kernel_equals_collapse_uniform(seed: int, order: int) -> None:
    rng = np.random.default_rng(seed)
    vals = np.stack([v for v in _piecewise_map(seed, order, 4).values()], axis=1)
    noise = rng.random(vals.shape[0]) < rng.choice([0.0, 0.01, 0.3])
    vals[noise, 0] = rng.choice(vals[:, 0], int(noise.sum()))
    u0, v0 = kflat.collapse_uniform(vals, order)
    state = kflat.stream_state(order, vals.shape[1])
    ou, ov, n = np.empty(1, np.int64), np.empty((1, vals.shape[1])), 0
    cuts = np.sort(rng.integers(0, vals.shape[0], 5))
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, vals.shape[0]]):
        ou, ov, n = kflat.collapse_stream(vals[a:b], order, state, ou, ov, n)
    assert np.array_equal(ou[:n], u0) and np.array_equal(ov[:n], v0)


@pytest.mark.skipif(not FLAT_GZ, reason="../shared/data/skymaps absent")
@pytest.mark.parametrize("path", FLAT_GZ, ids=[p.name for p in FLAT_GZ])
def test_real_gzipped_maps_stream_as_they_read_in_memory(path) -> None:
    streamed = read_skymap(path)
    ref = read_skymap(gzip.decompress(path.read_bytes()), name=str(path))
    assert np.array_equal(streamed.uniq, ref.uniq)
    assert np.array_equal(streamed.probdensity, ref.probdensity)
    for c in ("distmu", "distsigma", "distnorm"):
        a, b = getattr(streamed, c), getattr(ref, c)
        assert (a is None and b is None) or np.array_equal(a, b)
    assert streamed.meta == ref.meta


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e-3])
def test_bad_values_same_error_as_in_memory(bad: float) -> None:
    values = _piecewise_map(3, 3, 1)
    values["PROB"][[100, 500]] = bad
    data = _flat_fits(values)
    with pytest.raises(InvalidValueError) as ref:
        read_skymap(data)
    with pytest.raises(InvalidValueError) as got:
        read_skymap(gzip.compress(data))
    assert str(got.value) == str(ref.value)
    assert "2 " in str(got.value) and "row 100" in str(got.value)


def test_float32_columns_and_unusual_layouts_fall_back() -> None:
    values = _piecewise_map(4, 3, 1)
    e = _flat_fits({"PROB": values["PROB"].astype(np.float32)}, fmt="E")
    got = read_gzip_flat(gzip.compress(e), "x", 1 << 30)
    assert isinstance(got, FlatCells)
    ref = read_skymap(e)
    assert np.array_equal(got.uniq, ref.uniq) and np.array_equal(got.probdensity, ref.probdensity)
    ring = _flat_fits(values, ordering="RING")
    assert read_gzip_flat(gzip.compress(ring), "x", 1 << 30) == ring  # inflated for the general reader


def test_truncated_corrupt_concatenated_and_oversized() -> None:
    data = _flat_fits(_piecewise_map(5, 4, 4))
    gz = gzip.compress(data)
    with pytest.raises(CorruptSkyMapError, match="truncated"):
        read_skymap(gz[: len(gz) // 2])
    bad = bytearray(gz)
    bad[len(gz) // 2] ^= 0xFF
    with pytest.raises(CorruptSkyMapError):
        read_skymap(bytes(bad))
    half = len(data) // 2
    two = gzip.compress(data[:half]) + gzip.compress(data[half:])
    assert b"".join(inflate_chunks(two, "x", 1 << 30, chunk=1000)) == data
    assert np.array_equal(read_skymap(two).uniq, read_skymap(data).uniq)
    with pytest.raises(SkyMapError, match="MiB"):
        b"".join(inflate_chunks(gz, "x", len(data) - 1))
