"""The numba backend against the exact rational and plain float64 references, on every hard family.

The accuracy promised in ``wsprox.prox``'s Notes is checked here: each output is within
one unit in the last place of the output dtype of the exact prox of the (cast) input,
plus a float64 accumulation term ``8 d 2**-53 scale`` (scale = spread of w + lam + l1).
"""

from fractions import Fraction

import numpy as np
import pytest
from reference import FAMILIES, family, labels_of, prox_exact, prox_reference, row_scale

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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["huge_lam", "integer_exact", "float32_overflow"])
def test_batch_of_a_family_with_its_own_lam(name, dtype):
    """The families that fix lam, as batches (rows of one family share its first row's lam); exact partitions for
    integer rows."""
    d = 64
    w0, lam = family(name, d, rng=0)
    rows = [w0] + [family(name, d, rng=k)[0] for k in range(1, 5)]
    if name == "huge_lam":
        lam = 50.0 * max(float(np.ptp(r)) for r in rows)  # huge for every row
    w = np.array(rows, dtype=dtype)
    x, labels = wsprox.prox(w, lam, axis=1, backend="numba", return_clusters=True)
    for j in range(w.shape[0]):
        exact, exact_labels = assert_close_to_exact(x[j], w[j], lam, 0.0)
        np.testing.assert_array_equal(labels[j], np.unique(x[j], return_inverse=True)[1])
        if dtype == np.float64 and name == "integer_exact":
            np.testing.assert_array_equal(labels[j], exact_labels)
        if name == "huge_lam":
            assert labels[j].max() == 0  # one cluster: the mean


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_large_families_against_float64_reference(name):
    d = 20_000
    w, lam = family(name, d, rng=1, lam=0.5)
    w = w.astype(np.float64)
    x = wsprox.prox(w, lam, backend="numba")
    ref, _ = prox_reference(w, lam)
    np.testing.assert_allclose(x, ref, rtol=0, atol=16 * d * 2.0**-53 * row_scale(w, lam))


def local_tolerance(w, exact, exact_labels, lam, dtype):
    """Per element: an ulp of the output dtype plus ``8 n_B 2**-53 (spread_B + lam)`` of its exact cluster B.

    ``spread_B`` is the largest distance from a member's weight to the cluster's value: the
    rounding allowed is that of the cluster itself, not of the rest of the row.
    """
    exact_f = np.array([float(v) for v in exact])
    labels = np.asarray(exact_labels)
    w = np.asarray(w, dtype=np.float64)
    tol = np.spacing(np.abs(exact_f).astype(dtype)).astype(np.float64)
    for label in np.unique(labels):
        members = labels == label
        spread = float(np.max(np.abs(w[members] - exact_f[members])))
        tol[members] += 8 * members.sum() * 2.0**-53 * (spread + lam)
    return tol


def multiscale_row(rng, d):
    """Groups of weights at offsets from -1e12 to 1e16, each with noise of its own scale, most at 1e16.

    The row's median lies in the 1e16 group, so values near 0 would be lost in sums taken
    relative to it (they were, before the per-block references).
    """
    groups = [(-1e12, 1e-3), (-3.0, 0.01), (0.0, 0.004), (5.0, 1.0), (1e6, 1e-4), (1e16, 1e10)]
    sizes = rng.multinomial(d - d // 2, [1 / 5] * 5).tolist() + [d // 2]
    return np.concatenate([offset + scale * rng.standard_normal(n) for (offset, scale), n in zip(groups, sizes)])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multiscale_rows_to_local_accuracy(seed, dtype):
    rng = np.random.default_rng(seed)
    w = rng.permutation(multiscale_row(rng, 120)).astype(dtype)
    lam = [1e-3, 0.05, 0.5][seed % 3]
    x, labels = wsprox.prox(w, lam, backend="numba", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam)
    err = np.array([abs(Fraction(float(a)) - b) for a, b in zip(x.tolist(), exact)], dtype=float)
    tol = local_tolerance(w, exact, exact_labels, lam, dtype)
    assert np.all(err <= tol), f"max error/tolerance {np.max(err / tol):.3g}"
    # ids count distinct outputs: exact clusters that round to one float share an id
    np.testing.assert_array_equal(labels, labels_of([dtype(float(v)) for v in exact]))
    assert len(set(exact_labels)) < w.size  # some cluster pooled: the test is not vacuous


@pytest.mark.parametrize(
    ("w", "lam"),
    [
        ([-5.0, 7.0, 1e17, 1e17, 1e17], 1e-3),  # small values next to a huge median
        ([1e-300, 2e-300, 1.0, 1.0, 1.0], 1e-310),
        ([-1e17, -1e17, -1e17, 3.0, 4.0], 1e-3),
    ],
)
def test_small_values_beside_huge_ones_are_exact(w, lam):
    w = np.array(w)
    x, labels = wsprox.prox(w, lam, backend="numba", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam)
    assert [Fraction(v) for v in x.tolist()] == [Fraction(float(v)) for v in exact]  # correctly rounded
    np.testing.assert_array_equal(labels, exact_labels)


def test_small_values_beside_huge_ones_float32():
    w = np.array([1.0, 2.0, 1e20, 1e20, 1e20], np.float32)
    x = wsprox.prox(w, 1e-3, backend="numba")
    exact, _ = prox_exact(w, 1e-3)
    np.testing.assert_array_equal(x, np.array([float(v) for v in exact], np.float32))


@pytest.mark.parametrize("lam", [0.0, 1e-300, 1e-17, 1e-12])
def test_ties_share_an_output_at_tiny_lam(lam):
    rng = np.random.default_rng(3)
    for w in (np.array([0.1] * 16 + [0.2] * 17), rng.choice([0.1, 0.2, 0.3, 1e8 + 0.5], 500)):
        w = rng.permutation(w)
        x, labels = wsprox.prox(w, lam, backend="numba", return_clusters=True)
        for value in np.unique(w):
            assert np.unique(x[w == value]).size == 1, value
        exact, exact_labels = prox_exact(w, lam)
        np.testing.assert_array_equal(labels, exact_labels)
