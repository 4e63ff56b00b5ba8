"""The radix sorts behind the numba backend, including the float64 run refinement."""

import numpy as np
import pytest

from wsprox.solvers._numba_kernels import sort_row
from wsprox.solvers._sorting import SHORT_RUN, SMALL_ROW

RNG = np.random.default_rng(3)


def run_sort(row):
    d = row.size
    keys = np.empty(d, np.uint64)
    scratch = np.empty(d, np.uint64)
    perm = np.empty(d, np.uint32)
    xs, _ = sort_row(row, keys, scratch, perm)
    return np.array(xs), perm


def expected_order(row):
    """Ascending, -0.0 before +0.0, ties by index (what the sort promises)."""
    return np.lexsort((np.arange(row.size), ~np.signbit(row), row))


def check(row):
    xs, perm = run_sort(row)
    order = expected_order(row)
    np.testing.assert_array_equal(perm, order)
    assert xs.tobytes() == row[order].tobytes()


def families(d, dtype):
    eps = np.finfo(dtype).eps
    one_ulp_apart = (1.0 + eps * RNG.integers(0, 50, d)).astype(dtype)  # equal top key halves (float64)
    yield "gaussian", RNG.standard_normal(d).astype(dtype)
    yield "ties", RNG.integers(-3, 3, d).astype(dtype)
    yield "zeros", np.where(RNG.random(d) < 0.5, -0.0, 0.0).astype(dtype)
    yield "ulps", one_ulp_apart
    yield "ulps-negative", -one_ulp_apart
    yield "sorted", np.arange(d, dtype=dtype)
    yield "reversed", np.arange(d, dtype=dtype)[::-1].copy()
    yield "magnitudes", (RNG.standard_normal(d) * 10.0 ** RNG.integers(-30, 30, d)).astype(dtype)
    short_runs = np.repeat(RNG.standard_normal(d // 3 + 1), 3)[:d] * (1 + eps * RNG.integers(0, 4, d))
    yield "short-runs", short_runs.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3, SHORT_RUN, SHORT_RUN + 1, 1000, SMALL_ROW, SMALL_ROW + 1, 50_000])
def test_sort_families(dtype, d):
    for _name, row in families(d, dtype):
        check(row)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sort_strided_row(dtype):
    row = RNG.standard_normal(3001).astype(dtype)[::3]
    check(row)


def test_sort_extremes():
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        row = np.array([info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal, 0.0, -0.0, 1.0], dtype)
        check(row)
