"""Footprint grids: probability in every field, fields touching a region, greedy cover,
against the per-footprint set algebra (regions.moc.probability_in_ranges, kernels.ranges)."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwfollow import read_skymap
from gwfollow.kernels import footprints as kfp
from gwfollow.kernels import ranges as kr
from gwfollow.regions.moc import credible_ranges, probability_in_ranges
from gwfollow.skymaps.simulate import simulated_skymap_bytes
from gwfollow.targets.fields import (
    ZTF_FOV,
    FieldOfView,
    Telescope,
    field_footprints,
    field_probabilities,
    footprint_grid,
    rank_fields,
)
from gwfollow.targets.footprints import FootprintGrid

from .conftest import shared_path
from .strategies import canonical_ranges, multiorder_fits_bytes, random_skymap_arrays


def _reference_greedy(sm, feet, rows, limit):
    """The greedy selection by set algebra on each footprint (gwfollow before the grid)."""
    prob = [probability_in_ranges(sm, feet[r]) for r in rows]
    heap = [(-p, i) for i, p in enumerate(prob)]
    heapq.heapify(heap)
    covered = np.empty((0, 2), dtype=np.int64)
    sel, gains = [], []
    while heap and len(sel) < limit:
        _, i = heapq.heappop(heap)
        new = kr.difference(feet[rows[i]], covered)
        gain = probability_in_ranges(sm, new) if new.shape[0] else 0.0
        if heap and gain < -heap[0][0] - 1e-15:
            heapq.heappush(heap, (-gain, i))
            continue
        sel.append(i)
        gains.append(gain)
        covered = kr.union(covered, feet[rows[i]])
    return np.array(prob), np.array(sel, dtype=np.int64), np.array(gains)


@given(st.integers(0, 2**31), st.lists(canonical_ranges(max_order=7, max_cells=8), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_grid_matches_set_algebra_on_generated_maps(seed: int, feet: list[np.ndarray]) -> None:
    uniq, dens = random_skymap_arrays(seed % 1000, max_order=6, n_splits=120)
    sm = read_skymap(multiorder_fits_bytes(uniq, dens))
    grid = FootprintGrid.from_footprints(feet, 7)
    cum = grid.cumulative(sm)
    got = grid.probabilities(sm, cum)
    ref = np.array([probability_in_ranges(sm, f) for f in feet])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    region = credible_ranges(sm, [0.6], "include")[0]
    touching = grid.touching(region)
    assert touching.tolist() == [i for i, f in enumerate(feet) if kr.intersection(f, region).shape[0]]
    rows = np.arange(len(feet), dtype=np.int64)
    _, sel_ref, gains_ref = _reference_greedy(sm, feet, rows, len(feet))
    sel, gains = grid.greedy(cum, rows, got, len(feet))
    np.testing.assert_allclose(np.cumsum(gains), np.cumsum(gains_ref), rtol=1e-12, atol=1e-15)
    # The same fields are chosen unless two gains tie within rounding.
    if len(np.unique(np.round(ref, 12))) == len(ref):
        assert sel.tolist() == sel_ref.tolist()


def test_cumulative_counts_partial_cells_pro_rata(sim_bytes) -> None:
    sm = read_skymap(sim_bytes)
    rng = np.random.default_rng(3)
    x = np.sort(rng.integers(0, kr.NPIX29, 300))
    starts, ends = sm.sorted_cells
    hi, lo = kfp.cumulative_at(x, starts, ends, sm.by_start, sm.prob)
    cum = hi + lo
    for xi, ci in zip(x[::25], cum[::25]):
        below = np.array([[0, xi]], dtype=np.int64)
        assert ci == pytest.approx(probability_in_ranges(sm, below), rel=1e-12, abs=1e-15)
    assert kfp.cumulative_at(np.array([kr.NPIX29]), starts, ends, sm.by_start, sm.prob)[0][0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["S190814bv_bayestar.multiorder.fits", "S190425z_bayestar.fits.gz"])
def test_every_ztf_field_on_real_maps(name: str) -> None:
    sm = read_skymap(shared_path("skymaps", name))
    ztf = Telescope.from_file("ZTF", shared_path("fields", "ZTF_Fields.txt"), ZTF_FOV)
    got = field_probabilities(sm, ztf)
    feet = field_footprints(ztf.ra, ztf.dec, ztf.fov, 10)
    ref = np.array([probability_in_ranges(sm, f) for f in feet])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-17)
    r = rank_fields(sm, ztf, target=0.9)
    region = credible_ranges(sm, [0.999], "include")[0]
    touching = [i for i, f in enumerate(feet) if kr.intersection(f, region).shape[0]]
    assert sorted(r.rows.tolist()) == touching
    prob_ref, sel_ref, gains_ref = _reference_greedy(sm, feet, np.array(touching), len(touching))
    np.testing.assert_allclose(r.cumprob, np.cumsum(gains_ref), rtol=1e-11, atol=1e-14)
    n = int(r.selected.sum())
    assert r.rows[:n].tolist() == np.array(touching)[sel_ref[:n]].tolist()


def test_grid_is_cached_per_telescope_and_order() -> None:
    tel = Telescope.generated("gen", FieldOfView.square(20.0))
    g = footprint_grid(tel, 6)
    assert footprint_grid(tel, 6) is g and footprint_grid(tel, 5) is not g
    assert len(g) == len(tel) and g.offsets[-1] == g.ia.shape[0]
    sm = read_skymap(simulated_skymap_bytes(seed=2))
    # Overlapping fields tiling the sky: together at least the whole map.
    assert field_probabilities(sm, tel, 6).sum() >= 1 - 1e-12


def test_footprint_grid_disk_cache_round_trip_and_invalidation(tmp_path, caplog) -> None:
    """A grid kept on disk is loaded by a new process (the in-process cache
    emptied) with the same arrays; another field of view or order is another
    file; a corrupt file is rebuilt and rewritten."""
    from gwfollow.targets import fields as fl

    tel = fl.Telescope.generated("g", fl.FieldOfView.square(20.0))
    fl._GRIDS.clear()
    built = fl.footprint_grid(tel, 6, tmp_path)
    path = fl.footprint_cache_path(tel, 6, tmp_path)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
    fl._GRIDS.clear()
    loaded = fl.footprint_grid(tel, 6, tmp_path)
    assert loaded is not built
    for name in ("bounds", "ia", "ib", "offsets"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(built, name))
        assert getattr(loaded, name).dtype == getattr(built, name).dtype
    other_fov = fl.Telescope.generated("g", fl.FieldOfView.square(20.0, rotation_deg=10.0))
    assert fl.footprint_cache_path(other_fov, 6, tmp_path) != path
    assert fl.footprint_cache_path(tel, 7, tmp_path) != path
    path.write_bytes(b"not a grid")
    fl._GRIDS.clear()
    with caplog.at_level("WARNING"):
        again = fl.footprint_grid(tel, 6, tmp_path)
    assert "unreadable" in caplog.text
    np.testing.assert_array_equal(again.bounds, built.bounds)
    fl._GRIDS.clear()
    assert fl.FootprintGrid.load(path, len(tel), 6) is not None  # rewritten whole
    assert fl.FootprintGrid.load(path, len(tel) + 1, 6) is None  # another grid's file: inconsistent
    fl._GRIDS.clear()
