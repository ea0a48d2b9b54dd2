"""numba kernels of gwfollow: numpy arrays in, numpy arrays out.

No astropy, no I/O: units are converted by the callers in :mod:`gwfollow`.
Every kernel is compiled with ``cache=True``; :func:`warm_up` compiles (or
loads from the cache) all of them on tiny inputs so that the first alert
never waits for the JIT.
"""

from __future__ import annotations

import numpy as np

from gwfollow.kernels import credible, flatmap, footprints, geometry, healpix, probability, rank, ranges, schedule, sort

__all__ = ["credible", "flatmap", "footprints", "geometry", "healpix", "probability", "rank", "ranges", "schedule", "sort", "warm_up"]


def warm_up() -> None:
    """Compile or load every kernel once, on tiny inputs."""
    uniq = np.arange(4, 16, dtype=np.int64)
    dens = np.linspace(1.0, 2.0, 12)
    order, ipix = healpix.uniq_to_order_ipix(uniq)
    healpix.order_ipix_to_uniq(order, ipix)
    healpix.check_cells(uniq)
    healpix.cells_cover_sphere(uniq)
    healpix.prepare_cells(uniq)
    healpix.prepare_cells(uniq[::-1].copy())
    sort.argsort_desc_stable(dens)
    sort.argsort_nonneg_i64(uniq)
    sort.merge_sorted_runs(uniq, np.array([0, 6, 12], dtype=np.int64))
    healpix.lonlat_to_nest(10, np.zeros(1), np.zeros(1))
    healpix.nest_to_ring_order(0)
    val = credible.cell_probabilities(order, dens)
    idx = credible.rank_by_density(dens)
    cs = credible.sequential_cumsum(val, idx)
    top, _ = credible.rank_top(dens, val, 0.5)
    credible.rank_positions(top, 12)
    credible.n_whole_cells(cs, 0.5)
    credible.split_crossing_cell(0, 0, 0.5, 0.2, 3)
    rng, by_start = credible.spatial_order(uniq)
    pos = credible.inverse_permutation(idx)
    credible.ranges_of_top_cells(rng, by_start, pos, 3)
    a = ranges.normalize(rng[:3])
    b = ranges.normalize(rng[2:6])
    ranges.union(a, b)
    ranges.intersection(a, b)
    ranges.intersection_gallop(a, b)
    ranges.difference(a, b)
    ranges.complement(a)
    ranges.count_pixels(a)
    ranges.is_canonical(a)
    ranges.contains(a, np.zeros(1, dtype=np.int64))
    ranges.degrade(a, 3)
    ranges.to_uniq(a)
    probability.probability_in_ranges(rng, val, a)
    flatmap.collapse_uniform(np.ones((12 * 4, 1), dtype=np.float64), 1)
    st = flatmap.stream_state(1, 1)
    flatmap.collapse_stream(np.ones((12 * 4, 1)), 1, st, np.empty(1, np.int64), np.empty((1, 1)), 0)
    flatmap.check_and_scale(np.ones(4), 2.0)
    geometry.cap_ranges(2, 0.0, 0.0, 0.5)
    geometry.cap_cells(1, 0.0, 0.0, 0.5)
    geometry.nest_to_lonlat(1, np.zeros(1, np.int64))
    geometry.max_pixrad(3)
    cells = rank.locate_cells(np.zeros(2, np.int64), rng[:, 0].copy(), rng[:, 1].copy(), by_start)
    rank.posterior_densities(cells, np.ones(2), dens, dens, dens, dens, True)
    rank.select_sorted(np.arange(3, dtype=np.int64), a)
    s0, e0 = rng[by_start, 0].copy(), rng[by_start, 1].copy()
    table = rank.density_table(by_start, dens, dens, dens, dens, True)
    rank.scan_top_sky(np.zeros(3), np.zeros(3), np.ones(3), s0, e0, table, True, rank.cell_lookup(e0, 1), 1, 2, 2)
    bounds = np.unique(a.reshape(-1))
    ia, ib = footprints.atom_spans(bounds, a)
    offsets = np.array([0, ia.shape[0]], dtype=np.int64)
    hi, lo = footprints.cumulative_at(bounds, rng[:, 0].copy(), rng[:, 1].copy(), by_start, val)
    footprints.span_sums(hi, lo, ia, ib, offsets)
    footprints.overlap_pixels(bounds, a, ia, ib, offsets)
    footprints.greedy_cover(footprints.atom_probabilities(hi, lo), ia, ib, offsets,
                            np.zeros(1, np.int64), np.ones(1), 1)
    schedule.edf_assign(np.array([0, 0], np.int64), np.array([1, 1], np.int64))
    schedule.longest_run(np.ones((1, 3), dtype=np.bool_))
