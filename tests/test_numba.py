"""The numba CPU backend: values against independent references, invariances, hard inputs."""

import numpy as np
import pytest
import scipy.optimize as scipy_optimize  # in the test extra: a missing scipy must fail, not skip the suite
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import wsprox

RNG = np.random.default_rng(7)


def scipy_pipeline(w, lam, l1=0.0):
    """External reference: float64 sort + scipy's isotonic regression + unsort (+ soft threshold)."""
    w = np.asarray(w, dtype=np.float64)
    d = w.size
    if d <= 1 or lam == 0:
        y = w.copy()
    else:
        order = np.argsort(w, kind="stable")
        v = lam * (d - 1 - 2 * np.arange(d)) / (d - 1)
        y = np.empty(d)
        y[order] = scipy_optimize.isotonic_regression(w[order] + v).x
    return np.sign(y) * np.maximum(np.abs(y) - l1, 0.0)


def prox(w, lam, **kwargs):
    return wsprox.prox(w, lam, backend="numba", **kwargs)


@pytest.mark.parametrize("d", [2, 3, 10, 31, 32, 33, 255, 4096, 4097, 20000])
@pytest.mark.parametrize("lam", [1e-3, 0.1, 1.0, 50.0])
@pytest.mark.parametrize("l1", [0.0, 0.3])
def test_matches_scipy_pipeline(d, lam, l1):
    w = RNG.standard_normal(d)
    x = prox(w, lam, l1=l1)
    np.testing.assert_allclose(x, scipy_pipeline(w, lam, l1), rtol=0, atol=1e-12 * (1 + lam))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scipy_pipeline_large(dtype):
    w = RNG.standard_normal(10**6).astype(dtype)
    x = prox(w, 0.01)
    ref = scipy_pipeline(w, 0.01)
    tol = 1e-12 if dtype == np.float64 else 2e-7 * np.abs(ref).max()
    np.testing.assert_allclose(x, ref, rtol=0, atol=tol)


def test_batched_rows_equal_single_calls_bitwise():
    w = RNG.standard_normal((37, 301)).astype(np.float32)
    x, labels = prox(w, 0.2, l1=0.01, axis=1, return_clusters=True)
    for r in range(w.shape[0]):
        xr, lr = prox(w[r], 0.2, l1=0.01, return_clusters=True)
        assert x[r].tobytes() == xr.tobytes()
        np.testing.assert_array_equal(labels[r], lr)


# --------------------------------------------------------------------------- math.md facts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lam", [0.01, 0.5, 5.0])
def test_invariants(dtype, lam):
    w = (RNG.standard_normal(1000) * 3).astype(dtype)
    w[::10] = w[5]  # ties
    x = prox(w, lam).astype(np.float64)
    w64 = w.astype(np.float64)
    scale = np.abs(w64).max() + lam
    eps = np.finfo(dtype).eps
    assert abs(x.mean() - w64.mean()) <= 10 * eps * scale
    assert np.all(np.abs(x - w64) <= lam * (1 + 4 * eps) + 4 * eps * scale)
    order = np.argsort(w64, kind="stable")
    assert np.all(np.diff(x[order]) >= 0)
    assert np.all(x[::10] == x[5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_permutation_equivariance_bitwise(dtype):
    w = RNG.standard_normal(5000).astype(dtype)
    w[::7] = w[3]
    perm = RNG.permutation(w.size)
    x = prox(w, 0.3, l1=0.05)
    assert prox(w[perm], 0.3, l1=0.05).tobytes() == x[perm].tobytes()


def test_translation_exact_on_integers():
    d = 301
    w = RNG.integers(-500, 500, d).astype(np.float64)
    lam = 3.0 * (d - 1)
    x = prox(w, lam)
    np.testing.assert_array_equal(prox(w + 4096.0, lam), x + 4096.0)


def test_translation_float():
    w = RNG.standard_normal(2000)
    np.testing.assert_allclose(prox(w + 0.37, 0.2), prox(w, 0.2) + 0.37, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_unchanged_bitwise(dtype):
    for value in [0.0, 1.0, -3.7, 1e30]:
        w = np.full(1001, value, dtype)
        x, labels = prox(w, 0.9, return_clusters=True)
        assert x.tobytes() == w.tobytes()
        np.testing.assert_array_equal(labels, 0)


@pytest.mark.parametrize("gap", [0.5, 1.999, 2.0, 2.001, 7.0])
def test_d2_closed_form(gap):
    lam = 1.0
    w = np.array([3.0 + gap, 3.0])
    x = prox(w, lam)
    if gap <= 2 * lam:
        np.testing.assert_array_equal(x, [3.0 + gap / 2, 3.0 + gap / 2])
    else:
        np.testing.assert_allclose(x, [3.0 + gap - lam, 3.0 + lam], rtol=0, atol=1e-15)


def test_large_lam_gives_mean():
    w = RNG.standard_normal(777)
    x, labels = prox(w, 1e3, return_clusters=True)
    np.testing.assert_allclose(x, w.mean(), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(labels, 0)


def test_l1_is_soft_threshold_of_prox():
    w = RNG.standard_normal(3000)
    y = prox(w, 0.4)
    np.testing.assert_allclose(prox(w, 0.4, l1=0.25), np.sign(y) * np.maximum(np.abs(y) - 0.25, 0), atol=1e-15)
    x = prox(w, 0.4, l1=10.0)
    assert x.tobytes() == np.zeros_like(w).tobytes()  # +0.0 everywhere, never -0.0


@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_moreau_decomposition_lies_in_permutahedron(lam):
    """w - prox(w) is the projection onto lam * P(c): majorized by lam * c (math.md)."""
    d = 500
    w = RNG.standard_normal(d)
    y = np.sort(w - prox(w, lam))[::-1]
    c = np.sort((2 * np.arange(d) - d + 1) / (d - 1))[::-1]
    assert abs(y.sum()) <= 1e-12
    assert np.all(np.cumsum(y) <= lam * np.cumsum(c) + 1e-12)


def test_negative_zero_and_zero_are_tied():
    w = np.array([0.0, -0.0, 0.0, -0.0, 1.0, -1.0])
    x, labels = prox(w, 1e-3, return_clusters=True)
    assert labels[0] == labels[1] == labels[2] == labels[3]
    assert np.all(x[:4] == x[0])


def test_float32_near_overflow():
    w = np.array([3.0e38, 3.2e38, -3.3e38, 3.3e38, 1.0], np.float32)
    x = prox(w, 1e38)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, scipy_pipeline(w, 1e38), rtol=1e-6)


def test_huge_and_tiny_magnitudes():
    w = np.array([1e300, -1e300, 1e-300, -1e-300, 0.0, 5e-324, 1.0])
    x = prox(w, 1e-3)
    np.testing.assert_allclose(x, scipy_pipeline(w, 1e-3), rtol=1e-15, atol=1e-3)
    assert x[0] == 1e300 - 1e-3 and x[1] == -1e300 + 1e-3


# --------------------------------------------------------------------------- property tests


finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@given(
    w=hnp.arrays(np.float64, st.integers(1, 60), elements=finite_floats),
    lam=st.floats(0, 1e4, allow_nan=False, allow_infinity=False),
    l1=st.sampled_from([0.0, 0.5]),
)
def test_property_matches_scipy(w, lam, l1):
    x = prox(w, lam, l1=l1)
    ref = scipy_pipeline(w, lam, l1)
    scale = np.abs(w).max() + lam + 1.0
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-12 * scale * w.size)


@given(
    w=hnp.arrays(np.float32, st.integers(2, 40), elements=st.floats(-100, 100, width=32)),
    lam=st.floats(0, 100, allow_nan=False, width=32),
)
def test_property_float32_within_an_ulp_of_float64(w, lam):
    x = prox(w, lam)
    ref = prox(w.astype(np.float64), float(lam))
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(x - ref) <= spacing + 1e-12 * (np.abs(w).max() + lam))


def test_float64_near_overflow_is_scaled_not_lost():
    x = prox(np.array([1.7e308, -1.7e308]), 1e308)
    np.testing.assert_allclose(x, [7e307, -7e307], rtol=1e-15)
    for d in (10, 300):
        w = np.where(np.arange(d) % 2 == 0, 1.7e308, -1.7e308) * (1 - 1e-3 * RNG.random(d))
        x, labels = prox(w, 1e308, l1=1e306, return_clusters=True)
        s = 2.0**-64  # the prox is positively homogeneous: compare with the scaled problem
        ref, ref_labels = prox(w * s, 1e308 * s, l1=1e306 * s, return_clusters=True)
        assert np.all(np.isfinite(x))
        np.testing.assert_allclose(x, ref / s, rtol=1e-14)
        np.testing.assert_array_equal(labels, ref_labels)
