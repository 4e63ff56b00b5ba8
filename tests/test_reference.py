"""The test-tree references agree with each other and with closed forms."""

from fractions import Fraction

import numpy as np
import pytest
from reference import FAMILIES, family, labels_of, max_abs_error, prox_exact, prox_reference, row_scale


def _l1_for(w, lam):
    """An L1 strength on the scale of the data, so that it zeroes some but not all entries."""
    return 0.3 * (float(np.median(np.abs(np.asarray(w, np.float64)))) + lam)


def _resolvable(exact, scale, gap=1e-9):
    """True if distinct exact values are further apart than ``gap * scale`` (float64 can resolve them)."""
    values = sorted(set(exact))
    return all(float(b - a) > gap * scale for a, b in zip(values, values[1:]))


# ---------------------------------------------------------------------------------------
# the families themselves
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", [1, 2, 7, 64])
def test_family_shapes_and_determinism(name, d):
    w, lam = family(name, d, rng=3)
    w2, lam2 = family(name, d, rng=3)
    assert w.shape == (d,)
    assert w.dtype == (np.float32 if name == "float32_overflow" else np.float64)
    assert np.all(np.isfinite(w))
    assert lam > 0 and np.isfinite(lam)
    np.testing.assert_array_equal(w, w2)
    assert lam == lam2


def test_family_structure():
    d = 40
    w, lam = family("zeros_ramp", d, lam=0.8)
    np.testing.assert_array_equal(w[:20], 0.0)
    np.testing.assert_allclose(np.diff(w[19:]), 2.25 * 0.8 / d)
    # the heavy zero cluster sweeps the whole ramp: one cluster
    assert set(prox_exact(w, lam)[1]) == {0}
    # sorted_no_pool: every element alone; reversed and spike_ramp: one block
    assert prox_exact(*family("sorted_no_pool", d))[1] == list(range(d))
    assert set(prox_exact(*family("reversed", d))[1]) == {0}
    assert set(prox_exact(*family("spike_ramp", d))[1]) == {0}
    w, lam = family("integer_exact", d)
    assert np.all(w == np.round(w)) and (lam / (d - 1)) == int(lam / (d - 1))
    w, _ = family("signed_zeros", 200)
    zeros = w[w == 0]
    assert np.any(np.signbit(zeros)) and not np.all(np.signbit(zeros))
    w, _ = family("float32_overflow", 50)
    assert np.max(np.abs(w)) > 1e38
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(np.abs(w), dtype=np.float32))  # float32 sums overflow


# ---------------------------------------------------------------------------------------
# exact vs float64 reference
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", [1, 2, 3, 5, 17, 64])
@pytest.mark.parametrize("with_l1", [False, True])
def test_exact_and_float_reference_agree(name, d, with_l1):
    w, lam = family(name, d, rng=d)
    l1 = _l1_for(w, lam) if with_l1 else 0.0
    exact, exact_labels = prox_exact(w, lam, l1)
    x, labels = prox_reference(w, lam, l1)
    assert x.shape == (d,) and x.dtype == np.float64
    assert labels.shape == (d,) and labels.dtype == np.int64
    scale = row_scale(w, lam, l1)
    assert max_abs_error(x, exact) <= 1e-12 * scale
    if _resolvable(exact, scale):
        assert labels.tolist() == exact_labels
    if name == "integer_exact" and not with_l1:
        # integer z: every float64 sum is exact, so the partition is exact and each value is a rounded mean
        assert labels.tolist() == exact_labels
        ulp = np.spacing(np.abs(np.array([float(v) for v in exact])))
        assert all(abs(Fraction(a) - b) <= 2 * Fraction(u) for a, b, u in zip(x.tolist(), exact, ulp.tolist()))


def test_float_reference_batches_over_last_axis():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 9))
    x, labels = prox_reference(w, 0.7)
    assert x.shape == labels.shape == (4, 9)
    for row, x_row, lab_row in zip(w, x, labels):
        exact, exact_labels = prox_exact(row, 0.7)
        assert max_abs_error(x_row, exact) <= 1e-13
        assert lab_row.tolist() == exact_labels


# ---------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "lam"),
    [(0.0, 1.0, 0.25), (0.0, 1.0, 0.5), (0.0, 1.0, 0.75), (3.0, -1.0, 1.0), (3.0, -1.0, 2.0), (2.5, 2.5, 0.1)],
)
def test_d2_closed_form(a, b, lam):
    """d = 2: the pair merges at the mean iff |a - b| <= 2 lam, else each moves lam towards the other."""
    fa, fb, flam = Fraction(a), Fraction(b), Fraction(lam)
    if abs(fa - fb) <= 2 * flam:
        expected = [(fa + fb) / 2] * 2
    else:
        step = flam if fb > fa else -flam
        expected = [fa + step, fb - step]
    exact, labels = prox_exact([a, b], lam)
    assert exact == expected
    assert labels == labels_of(expected)
    x, ref_labels = prox_reference(np.array([a, b]), lam)
    np.testing.assert_allclose(x, [float(v) for v in expected], rtol=0, atol=1e-15)
    assert ref_labels.tolist() == labels


def test_d2_boundary_merges():
    # |a - b| = 2 lam exactly: merged (the tie convention pools)
    exact, labels = prox_exact([0.0, 1.0], 0.5)
    assert exact == [Fraction(1, 2), Fraction(1, 2)] and labels == [0, 0]
    exact, labels = prox_exact([0.0, 1.0], Fraction(1, 2) - Fraction(1, 10**30))
    assert exact[0] < exact[1] and labels == [0, 1]


@pytest.mark.parametrize("name", ["gaussian", "zero_one", "clustered_jitter", "integer_exact", "huge_tiny"])
def test_big_lam_gives_the_mean(name):
    w, _ = family(name, 30, rng=1)
    ws = [Fraction(v) for v in w.tolist()]
    mean = sum(ws) / len(ws)
    # lam/(d-1) >= max - min makes every prefix of z average at least mean(w): one block
    lam = Fraction(len(ws)) * (max(ws) - min(ws)) + 1
    exact, labels = prox_exact(w, lam)
    assert exact == [mean] * len(ws)
    assert labels == [0] * len(ws)
    x, ref_labels = prox_reference(w, float(lam))
    assert max_abs_error(x, exact) <= 1e-12 * row_scale(w, float(lam))
    assert ref_labels.tolist() == labels


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_lam_zero_is_identity(name):
    w, _ = family(name, 25, rng=2)
    exact, labels = prox_exact(w, 0)
    assert exact == [Fraction(v) for v in w.tolist()]
    assert labels == labels_of(exact)
    x, ref_labels = prox_reference(w, 0.0)
    np.testing.assert_array_equal(x, w.astype(np.float64))
    assert ref_labels.tolist() == labels
    # with l1: the soft threshold
    mu = _l1_for(w, 0.0)
    exact_l1, _ = prox_exact(w, 0, mu)
    fmu = Fraction(mu)
    expected = [v - fmu if v > fmu else v + fmu if v < -fmu else Fraction(0) for v in exact]
    assert exact_l1 == expected


@pytest.mark.parametrize("name", ["gaussian", "zero_one", "clustered_jitter", "integer_exact", "signed_zeros"])
def test_exact_prox_properties(name):
    """Mean preserved, moves at most lam, order kept, ties tied, soft-threshold composition."""
    w, lam = family(name, 33, rng=4)
    ws = [Fraction(v) for v in w.tolist()]
    exact, labels = prox_exact(w, lam)
    assert sum(exact) == sum(ws)
    assert all(abs(x - v) <= Fraction(lam) for x, v in zip(exact, ws))
    for i in range(len(ws)):
        for j in range(len(ws)):
            if ws[i] < ws[j]:
                assert exact[i] <= exact[j]
            if ws[i] == ws[j]:
                assert exact[i] == exact[j] and labels[i] == labels[j]
    mu = Fraction(_l1_for(w, lam))
    exact_l1, labels_l1 = prox_exact(w, lam, mu)
    assert exact_l1 == [x - mu if x > mu else x + mu if x < -mu else 0 for x in exact]
    assert labels_l1 == labels_of(exact_l1)


def test_exact_handles_ints_and_empty():
    assert prox_exact([], 1.0) == ([], [])
    assert prox_exact([5], 1.0) == ([Fraction(5)], [0])
    exact, labels = prox_exact([0, 1, 5], 1)
    assert exact == [1, 1, 4] and labels == [0, 0, 1]
    exact, labels = prox_exact([0, 1, 5], 2)
    assert exact == [Fraction(3, 2), Fraction(3, 2), 3] and labels == [0, 0, 1]
