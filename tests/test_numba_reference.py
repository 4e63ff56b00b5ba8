"""The numba backend against the exact rational and plain float64 references, on every hard family.

The accuracy promised in ``wsprox.prox``'s Notes is checked here: each output is within
one unit in the last place of the output dtype of the exact prox of the (cast) input,
plus a float64 accumulation term ``8 d 2**-53 scale`` (scale = spread of w + lam + l1).
"""

from fractions import Fraction

import numpy as np
import pytest
from reference import FAMILIES, family, prox_exact, prox_reference, row_scale

import wsprox

SIZES = [2, 3, 31, 32, 33, 100, 257]


def tolerance(exact, d, scale, dtype):
    exact = np.array([float(v) for v in exact])
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    return ulp + 8 * d * 2.0**-53 * scale


def assert_close_to_exact(x, w, lam, l1):
    exact, exact_labels = prox_exact(w, lam, l1)
    err = np.array([abs(Fraction(float(a)) - b) for a, b in zip(x.tolist(), exact)], dtype=float)
    tol = tolerance(exact, w.size, row_scale(w, lam, l1), x.dtype)
    assert np.all(err <= tol), f"max error {err.max():.3g}, tolerance {tol[np.argmax(err - tol)]:.3g}"
    return exact, exact_labels


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1", [0.0, 0.1])
def test_families_against_exact(name, d, dtype, l1):
    w, lam = family(name, d, rng=d, lam=0.5)
    w = w.astype(dtype)
    if not np.all(np.isfinite(w)):
        pytest.fail("family produced non-finite values")
    x, labels = wsprox.prox(w, lam, l1=l1, backend="numba", return_clusters=True)
    assert x.dtype == dtype
    exact, exact_labels = assert_close_to_exact(x, w, lam, l1)
    if dtype == np.float64 and name == "integer_exact":
        # every sum is exact: the partition must match exactly (values are rounded once per mean)
        np.testing.assert_array_equal(labels, exact_labels)


@pytest.mark.parametrize("d", [17, 200, 1001])
def test_integer_partitions_exact(d):
    rng = np.random.default_rng(d)
    for q in (1, 2, 5):
        w = rng.integers(-d, d + 1, d).astype(np.float64)
        lam = float(q * (d - 1))
        x, labels = wsprox.prox(w, lam, backend="numba", return_clusters=True)
        exact, exact_labels = assert_close_to_exact(x, w, lam, 0.0)
        np.testing.assert_array_equal(labels, exact_labels)
        assert [Fraction(v) for v in x.tolist() if float(Fraction(v)).is_integer()] == [
            v for v in exact if v.denominator == 1
        ]  # integer means are represented exactly
        assert labels.max() + 1 < d  # some pooling happened: the test is not vacuous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_of_families_against_exact(dtype):
    d = 64
    rows, lam = [], 0.5
    for k, name in enumerate(sorted(FAMILIES)):
        if name in ("huge_lam", "integer_exact", "float32_overflow"):
            continue  # these fix their own lam; a batch shares one
        rows.append(family(name, d, rng=k, lam=lam)[0])
    w = np.array(rows, dtype=dtype)
    x, labels = wsprox.prox(w.T, lam, axis=0, backend="numba", return_clusters=True)
    for j in range(w.shape[0]):
        exact, _ = assert_close_to_exact(x[:, j], w[j], lam, 0.0)
        np.testing.assert_array_equal(labels[:, j], np.unique(x[:, j], return_inverse=True)[1])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_large_families_against_float64_reference(name):
    d = 20_000
    w, lam = family(name, d, rng=1, lam=0.5)
    w = w.astype(np.float64)
    x = wsprox.prox(w, lam, backend="numba")
    ref, _ = prox_reference(w, lam)
    np.testing.assert_allclose(x, ref, rtol=0, atol=16 * d * 2.0**-53 * row_scale(w, lam))
