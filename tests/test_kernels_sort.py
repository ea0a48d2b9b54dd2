"""Radix sorts against numpy's stable argsort."""

from __future__ import annotations

import numpy as np
from gwfollow.kernels import sort as ks
from hypothesis import given, settings
from hypothesis import strategies as st

INT = st.one_of(st.integers(0, 5), st.integers(0, 2**63 - 1), st.integers(2**40, 2**40 + 3))


@given(st.lists(INT, max_size=200))
@settings(max_examples=200, deadline=None)
def test_integer_sorts_equal_numpy_stable(values) -> None:
    a = np.array(values, dtype=np.int64)
    ref = np.argsort(a, kind="stable")
    assert np.array_equal(ks.argsort_nonneg_i64(a), ref)
    assert np.array_equal(ks.radix_argsort_u64(a.view(np.uint64)), ref)
    work = a.copy()
    srt, order = ks.sort_nonneg_i64_inplace(work)
    assert np.array_equal(order, ref) and np.array_equal(srt, a[ref])


@given(st.lists(st.floats(0, 1e300, allow_subnormal=True), max_size=200))
@settings(max_examples=200, deadline=None)
def test_descending_float_sort_equals_numpy_stable(values) -> None:
    a = np.array(values, dtype=np.float64)
    assert np.array_equal(ks.argsort_desc_stable(a), np.argsort(-a, kind="stable"))


def test_large_sort_in_place() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 12 * 4**29, 3_000_000, dtype=np.int64)
    a[::3] = a[1::3][: a[::3].size]  # ties
    ref = np.argsort(a, kind="stable")
    srt, order = ks.sort_nonneg_i64_inplace(a.copy())
    assert np.array_equal(order, ref) and np.array_equal(srt, a[ref])


@given(st.lists(st.lists(st.integers(0, 50), max_size=30), min_size=1, max_size=12))
@settings(max_examples=200, deadline=None)
def test_merge_sorted_runs_is_a_stable_argsort(runs: list[list[int]]) -> None:
    from gwfollow.kernels.sort import merge_sorted_runs

    keys = np.concatenate([np.sort(np.array(r, dtype=np.int64)) for r in runs]) if runs else np.empty(0, np.int64)
    bounds = np.cumsum([0] + [len(r) for r in runs]).astype(np.int64)
    got = merge_sorted_runs(keys, bounds)
    assert np.array_equal(got, np.argsort(keys, kind="stable"))


def test_prepare_cells_on_nuniq_ordered_maps_matches_the_radix_path() -> None:
    from gwfollow.kernels.healpix import prepare_cells

    from .strategies import random_multiorder_cells

    rng = np.random.default_rng(7)
    for _ in range(20):
        uniq = np.sort(random_multiorder_cells(rng, 9, int(rng.integers(0, 400))))
        code, _, order, ipix, ranges, by_start = prepare_cells(uniq)
        assert code == 0
        assert np.array_equal(by_start, np.argsort(ranges[:, 0], kind="stable"))
        shuffled = rng.permutation(uniq)
        code2, _, _, _, r2, b2 = prepare_cells(shuffled)
        assert code2 == 0 and np.array_equal(r2[b2], ranges[by_start])
