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
