"""wsprox.certify: accepts correct proxes (of every backend and family), rejects wrong ones."""

import warnings

import numpy as np
import pytest
from reference import FAMILIES, family, prox_exact, prox_reference

import wsprox
from wsprox import Certificate, certify

DTYPES = [np.float64, np.float32]


def _prox_and_labels(w, lam):
    return wsprox.prox(w, lam, backend="numba", return_clusters=True)


# ---------------------------------------------------------------------------------------
# accepts
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", [1, 2, 3, 17, 200, 4097])
@pytest.mark.parametrize("dtype", DTYPES)
def test_accepts_numba_prox_on_families(name, d, dtype):
    w, lam = family(name, d, rng=d)
    w = w.astype(dtype)
    x = wsprox.prox(w, lam)
    cert = certify(w, x, lam)
    assert isinstance(cert, Certificate)
    assert cert.ok and bool(cert)
    assert 0.0 <= cert.max_violation <= 0.5
    assert cert.ok_per_problem.shape == () and cert.ok_per_problem.dtype == np.bool_
    assert bool(cert.ok_per_problem)
    assert cert.violation_per_problem.shape == ()
    assert float(cert.violation_per_problem) == cert.max_violation


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", DTYPES)
def test_accepts_random(seed, dtype):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 3000))
    w = (rng.standard_normal(d) * rng.uniform(1e-3, 1e3) + rng.uniform(-10, 10)).astype(dtype)
    lam = float(rng.uniform(1e-4, 10.0))
    assert certify(w, wsprox.prox(w, lam), lam).ok


@pytest.mark.parametrize("name", ["gaussian", "integer_exact", "zero_one", "sorted_no_pool", "huge_lam"])
def test_accepts_float_reference(name):
    w, lam = family(name, 300, rng=1)
    x, _ = prox_reference(w, lam)
    assert certify(w, x, lam).ok


def test_exact_answers_have_tiny_violation():
    w, lam = family("integer_exact", 64, rng=2)
    x, _ = prox_reference(w, lam)
    # block means of integers: the values are rounded, but sums of the block ends cancel to rounding
    assert certify(w, x, lam).max_violation < 1e-3
    assert certify(np.array([0, 1, 5]), np.array([1, 1, 4]), 1).max_violation == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_batches_with_axis(dtype):
    rng = np.random.default_rng(7)
    w3 = rng.standard_normal((4, 3, 50)).astype(dtype)
    for axis in [0, 1, 2, -1, -3]:
        x = wsprox.prox(w3, 0.3, axis=axis)
        cert = certify(w3, x, 0.3, axis=axis)
        expected_shape = tuple(s for i, s in enumerate(w3.shape) if i != axis % 3)
        assert cert.ok
        assert cert.ok_per_problem.shape == expected_shape and cert.ok_per_problem.all()
        assert cert.violation_per_problem.shape == expected_shape
        # per-problem proxes are not the prox of the whole array
        assert not certify(w3, x, 0.3).ok
    # axis=None: the whole array is one problem
    x = wsprox.prox(w3, 0.3)
    cert = certify(w3, x, 0.3)
    assert cert.ok and cert.ok_per_problem.shape == ()
    assert not certify(w3, x, 0.3, axis=-1).ok


def test_batch_reports_the_bad_problem():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((6, 40))
    x = wsprox.prox(w, 0.5, axis=1)
    x[4, 7] += 1e-3
    cert = certify(w, x, 0.5, axis=1)
    assert not cert.ok
    np.testing.assert_array_equal(cert.ok_per_problem, [True, True, True, True, False, True])
    assert cert.max_violation == cert.violation_per_problem[4] > 1
    assert np.all(cert.violation_per_problem[[0, 1, 2, 3, 5]] <= 1)


def test_tie_order_does_not_matter():
    """Tied inputs have tied outputs, so any order among ties certifies the same way."""
    rng = np.random.default_rng(9)
    for name in ["zero_one", "integer_exact", "signed_zeros", "all_equal"]:
        w, lam = family(name, 101, rng=3)
        x = wsprox.prox(w, lam)
        for _ in range(3):
            p = rng.permutation(w.size)
            cert = certify(w[p], x[p], lam)
            assert cert.ok
            assert cert.max_violation == pytest.approx(certify(w, x, lam).max_violation, rel=1e-6, abs=1e-12)
    # untied outputs for tied inputs are rejected whatever the order
    w = np.array([1.0, 1.0, 3.0, 1.0])
    x = wsprox.prox(w, 0.5)
    bad = x.copy()
    bad[0] -= 0.01
    bad[1] += 0.01
    for p in [[0, 1, 2, 3], [1, 0, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]]:
        assert not certify(w[p], bad[p], 0.5).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_and_empty(dtype):
    assert certify(np.array([2.5], dtype), np.array([2.5], dtype), 3.0).ok  # d = 1: the identity
    assert not certify(np.array([2.5], dtype), np.array([2.0], dtype), 3.0).ok
    cert = certify(np.zeros(0, dtype), np.zeros(0, dtype), 1.0)
    assert cert.ok and cert.max_violation == 0.0
    cert = certify(np.zeros((0, 5), dtype), np.zeros((0, 5), dtype), 1.0, axis=1)
    assert cert.ok and cert.ok_per_problem.shape == (0,)
    # lam = 0: only the identity passes
    w = np.array([3.0, -1.0, 2.0], dtype)
    assert certify(w, w, 0.0).ok
    assert not certify(w, np.sort(w), 0.0).ok


def test_integer_and_bool_inputs():
    w = np.array([0, 1, 5, 5, 2])
    x = wsprox.prox(w, 4.0)
    assert certify(w, x, 4).ok
    wb = np.array([True, False, True])
    assert certify(wb, wsprox.prox(wb, 0.1), 0.1).ok


@pytest.mark.parametrize("d", [10**4, pytest.param(10**6, marks=pytest.mark.slow)])
def test_accepts_nearly_constant_z_around_zero(d):
    """spike_ramp shifted to mean 0: z is nearly constant and x is ~0, so only the allowance for
    the float64 rounding of z = w + v (not rtol * spread, not the rounding of x) makes room for
    float64 solutions."""
    w, lam = family("spike_ramp", d)
    w = w - np.mean(w)
    x = wsprox.prox(w, lam)
    # the exact prox is one cluster at ~3e-17, but at d = 1e6 the margins of the last pooling
    # decisions are below the float64 rounding of z, so a few trailing values may stay apart
    assert np.max(np.abs(x)) <= 2.0**-52 * np.max(np.abs(w))
    cert = certify(w, x, lam)
    assert cert.ok and cert.max_violation <= 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaussian", "zeros_ramp", "spike_ramp", "clustered_jitter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_accepts_million(name, dtype):
    w, lam = family(name, 10**6, rng=11)
    w = w.astype(dtype)
    x = wsprox.prox(w, lam)
    cert = certify(w, x, lam)
    assert cert.ok and cert.max_violation <= 0.5
    # and still sees the top 1% of the values moved by a visible amount (a single float32 element
    # is below the tolerance at this size: d float32 roundings of one cluster add up)
    bad = x.copy()
    top = np.argsort(w, kind="stable")[-(10**4) :]
    bad[top] += dtype(1e-3 * (float(np.ptp(w)) + lam))
    assert not certify(w, bad, lam).ok


# ---------------------------------------------------------------------------------------
# rejects
# ---------------------------------------------------------------------------------------
REJECT_FAMILIES = ["gaussian", "zeros_ramp", "clustered_jitter", "zero_one", "integer_exact", "float32_overflow"]


def _scale(w, lam):
    w = np.asarray(w, np.float64)
    return float(np.ptp(w)) + lam


@pytest.mark.parametrize("name", REJECT_FAMILIES + ["sorted_no_pool", "reversed", "spike_ramp"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rejects_the_unregularized_weights(name, dtype):
    w, lam = family(name, 200, rng=4)
    w = w.astype(dtype)
    cert = certify(w, w, lam)
    assert not cert.ok and cert.max_violation > 1


@pytest.mark.parametrize("name", REJECT_FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rejects_a_moved_block(name, dtype):
    w, lam = family(name, 200, rng=5)
    w = w.astype(dtype)
    x, labels = _prox_and_labels(w, lam)
    for label in np.unique(labels)[:: max(1, labels.max() // 5)]:
        for sign in (1, -1):
            bad = x.astype(np.float64)
            bad[labels == label] += sign * 1e-4 * _scale(w, lam)
            if not np.all(np.isfinite(bad.astype(dtype))):  # float32_overflow: moved past the largest float32
                continue
            cert = certify(w, bad.astype(dtype), lam)
            assert not cert.ok, (label, sign)
            assert cert.max_violation > 1


@pytest.mark.parametrize("name", REJECT_FAMILIES)
def test_rejects_swapped_values(name):
    w, lam = family(name, 200, rng=6)
    x, labels = _prox_and_labels(w, lam)
    if labels.max() == 0:  # one cluster: swapping changes nothing, so move one element instead
        bad = x.copy()
        bad[0] += 1e-3 * _scale(w, lam)
    else:
        i = int(np.argmin(x))
        j = int(np.argmax(x))
        bad = x.copy()
        bad[i], bad[j] = x[j], x[i]
    assert not certify(w, bad, lam).ok


@pytest.mark.parametrize("name", ["gaussian", "zeros_ramp", "zero_one", "integer_exact"])
def test_rejects_split_cluster_and_broken_order(name):
    w, lam = family(name, 200, rng=7)
    x, labels = _prox_and_labels(w, lam)
    counts = np.bincount(labels)
    big = int(np.argmax(counts))
    assert counts[big] >= 2
    members = np.flatnonzero(labels == big)
    members = members[np.argsort(w[members], kind="stable")]
    lo, hi = members[0], members[-1]
    delta = 1e-4 * _scale(w, lam)
    # split a cluster keeping its mean (the total sum stays right)
    split = x.copy()
    split[lo] -= delta
    split[hi] += delta
    assert not certify(w, split, lam).ok
    # break monotonicity inside the cluster the other way round
    broken = x.copy()
    broken[lo] += delta
    broken[hi] -= delta
    assert not certify(w, broken, lam).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_rejects_shift_wrong_lam_and_mean(dtype):
    w, lam = family("gaussian", 300, rng=8)
    w = w.astype(dtype)
    x = wsprox.prox(w, lam)
    scale = _scale(w, lam)
    assert not certify(w, (x + dtype(1e-4 * scale)).astype(dtype), lam).ok
    assert not certify(w, x, 1.5 * lam).ok
    assert not certify(w, x, 0.5 * lam).ok
    assert not certify(w, np.full_like(w, w.astype(np.float64).mean()), lam).ok


def test_rejects_small_values_wrecked_beside_huge_ones():
    """The partial-sum conditions are checked to a tolerance set by the whole row (1e17 here), so they
    cannot see the two small values pooled to 0; condition 6 (no weight moves by more than lam) can."""
    w = np.array([-5.0, 7.0, 1e17, 1e17, 1e17])
    wrong = np.array([0.0, 0.0, 1e17, 1e17, 1e17])
    cert = certify(w, wrong, 1e-3)
    assert not cert.ok and cert.max_violation > 1e6
    assert certify(w, np.array([-4.999, 7.0005, 1e17, 1e17, 1e17]), 1e-3).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_displacement_condition_is_tight(dtype):
    """End elements of a row with no pooling move by exactly lam: condition 6's bound is met with
    equality and accepted; moving them a little further is rejected."""
    lam = 0.25
    w = np.array([0.0, 10.0, 20.0], dtype)
    x = wsprox.prox(w, lam)
    np.testing.assert_array_equal(x, np.array([0.25, 10.0, 19.75], dtype))
    assert certify(w, x, lam).ok
    for k, sign in ((0, 1), (2, -1)):
        bad = x.copy()
        bad[k] += sign * dtype(1e-3)
        bad[1] -= sign * dtype(1e-3)  # keeps the mean and the order
        cert = certify(w, bad, lam)
        assert not cert.ok and cert.max_violation > 1


@pytest.mark.parametrize("lam", [1.0, 1e300, 1e307])
def test_rows_near_the_float64_limit(lam):
    """Partial sums of such rows overflow float64: they are checked in units of a power of two,
    so the prox passes, a 1% error is rejected (it passed when the tolerance overflowed to
    inf), no overflow warning escapes, and a small row beside a huge one keeps its own scale."""
    rows = np.array([[1.0, 2.0, 5.0, 9.0], [-1e308, 1e308, 5e307, -3e307]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = wsprox.prox(rows, lam, axis=1)
        exact = [float(v) for v in prox_exact(rows[1], lam)[0]]
        np.testing.assert_allclose(x[1], exact, rtol=1e-15)
        assert certify(rows, x, lam, axis=1).ok
        bad = x.copy()
        bad[1] *= 1.01
        cert = certify(rows, bad, lam, axis=1)
        assert cert.ok_per_problem.tolist() == [True, False]
        if lam == 1.0:  # the small row keeps its own scale beside the huge one
            small = x.copy()
            small[0, 0] += 1e-6
            assert certify(rows, small, lam, axis=1).ok_per_problem.tolist() == [False, True]


def test_tolerance_is_relative():
    w, lam = family("gaussian", 300, rng=9)
    x = wsprox.prox(w, lam)
    bad = x.copy()
    bad[np.argmax(w)] += 1e-6
    assert not certify(w, bad, lam).ok
    assert certify(w, bad, lam, rtol=1e-3).ok
    # a move far below the tolerance is accepted: the certificate is a float64 check
    tiny = x.copy()
    tiny[np.argmax(w)] += 1e-14
    assert certify(w, tiny, lam).ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_errors_are_seen_on_long_rows(dtype):
    """The row's tolerance grows with d (about 8e-5 here); each cluster's mean is checked to its own.

    Moving the two extreme outputs by 1e-5 in opposite directions keeps the total and every
    partial sum within the row's tolerance (this passed before condition 5), but each is a
    cluster whose value is off by 1e-5, 2000 times ``rtol`` relative to its distance from the
    median.
    """
    w = np.random.default_rng(5).standard_normal(10**5).astype(dtype)
    lam = 0.1
    x = wsprox.prox(w, lam)
    assert certify(w, x, lam).ok
    lo, hi = np.argmin(w), np.argmax(w)
    bad = x.astype(np.float64)
    bad[lo] -= 1e-5
    bad[hi] += 1e-5
    cert = certify(w, bad, lam)
    assert not cert.ok and cert.max_violation > 100
    assert certify(w, bad, lam, rtol=1e-4).ok  # the same error at a tolerance that allows it


def test_accepts_a_few_ulps_on_uncentred_rows():
    """A solver averaging uncentred values (scipy's isotonic regression near 7e9) is off by a few ulps."""
    w = 7e9 + np.random.default_rng(3).standard_normal(10**4)
    lam = 1.3
    x, labels = _prox_and_labels(w, lam)
    singles = np.flatnonzero(np.bincount(labels.ravel())[labels] == 1)
    k = singles[np.argmin(np.abs(w[singles] - np.median(w)))]  # the singleton cluster nearest the median
    for ulps in (-4, 4):
        moved = x.copy()
        moved[k] += ulps * np.spacing(x[k])
        assert certify(w, moved, lam).ok  # failed when condition 5 allowed 2 ulps of each value
    assert not certify(w, x + 2e-4 * (labels == labels.max()), lam).ok  # the top cluster off by 2e-4


@pytest.mark.parametrize("d", [3, 1000])
def test_rejects_a_wrong_level_when_lam_dwarfs_the_weights(d):
    """One cluster at the mean: its level is checked at float64 accuracy, not relative to lam."""
    w = np.random.default_rng(d).integers(0, 6, d).astype(np.float64)
    lam = 1e12
    x = wsprox.prox(w, lam)
    np.testing.assert_allclose(x, np.full(d, w.mean()), rtol=1e-12)
    assert certify(w, x, lam).ok
    # the float64 allowance on the level is about 8 d eps sum|v| / d = 4 d eps lam ~ 1e-3 d here
    off = 4e-3 * d
    for wrong in (np.zeros(d), np.full(d, w.mean() + off), np.full(d, w.mean() - off)):
        assert not certify(w, wrong, lam).ok  # these passed when the tolerance was relative to lam
    # what summing the velocities costs a float64 solver is still allowed
    assert certify(w, x * (1 + 4 * d * 2.0**-53), lam).ok


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.float32, 1e-45), (np.float32, 1e-40), (np.float16, 1e-7), (np.float64, 1e-320)]
)
def test_accepts_correct_subnormal_results(dtype, scale):
    """Results below the normal range are allowed their absolute rounding (the subnormal spacing)."""
    w = (np.random.default_rng(5).integers(-3, 4, 40) * scale).astype(dtype)
    lam = float(3 * scale)
    x = wsprox.prox(w, lam)
    assert x.dtype == dtype
    assert certify(w, x, lam).ok
    exact = np.array([float(v) for v in prox_exact(w.astype(np.float64), lam)[0]])
    assert certify(w, exact.astype(dtype), lam).ok  # the exact prox rounded to the dtype


@pytest.mark.parametrize(
    ("name", "d", "lam"), [("sorted", 1000, 1e-318), ("sorted", 10**4, 1e-312), ("spike", 10**4, 1e-312)]
)
def test_accepts_numba_on_subnormal_velocities(name, d, lam):
    """lam / (d - 1) is subnormal: numba's velocities are off by up to d/2 units of 2**-1074, which is allowed."""
    from wsprox._families import make_input

    w = make_input(name, d, lam)
    assert certify(w, wsprox.prox(w, lam), lam).ok
    assert not certify(w, w, lam).ok


def test_rejects_the_identity_at_tiny_scales():
    w = np.random.default_rng(6).standard_normal(100) * 1e-300
    lam = 1e-300
    assert certify(w, wsprox.prox(w, lam), lam).ok
    assert not certify(w, w, lam).ok
    w = np.random.default_rng(7).standard_normal(100) * 1e-310  # subnormal
    assert certify(w, wsprox.prox(w, 1e-310), 1e-310).ok
    assert not certify(w, w, 1e-310).ok


def test_floating_point_traps_do_not_matter():
    """Underflow in the check (subnormal values, lam huge beside the weights) is not an error."""
    tiny = np.random.default_rng(8).standard_normal(50) * 1e-310
    x_tiny, x_huge_lam = wsprox.prox(tiny, 1e-310), wsprox.prox(np.arange(4.0), 1e300)  # kernels: NUMBA_DISABLE_JIT
    with np.errstate(all="raise"):  # runs them as numpy code, where the traps would apply
        assert certify(tiny, x_tiny, 1e-310).ok
        assert certify(np.arange(4.0), x_huge_lam, 1e300).ok
        assert wsprox.penalty(tiny) > 0


# ---------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------
def test_validation_errors():
    w = np.array([0.0, 1.0, 5.0])
    x = np.array([1.0, 1.0, 4.0])
    with pytest.raises(ValueError, match="x has shape"):
        certify(w, x[:2], 1.0)
    with pytest.raises(ValueError, match="x has shape"):
        certify(w, x.reshape(3, 1), 1.0)
    with pytest.raises(TypeError, match="^w has unsupported dtype"):
        certify(w.astype(complex), x, 1.0)
    with pytest.raises(TypeError, match="^x has unsupported dtype"):
        certify(w, x.astype(complex), 1.0)
    with pytest.raises(TypeError, match="^x has unsupported dtype"):
        certify(w, np.array(["a", "b", "c"]), 1.0)
    with pytest.raises(ValueError, match="^w must be finite"):
        certify(np.array([0.0, np.nan, 1.0]), x, 1.0)
    with pytest.raises(ValueError, match="^x must be finite: 1 non-finite value .* index 2"):
        certify(w, np.array([1.0, 1.0, np.inf]), 1.0)
    with pytest.raises(ValueError, match="^lam must be >= 0"):
        certify(w, x, -1.0)
    with pytest.raises(ValueError, match="^lam must be finite"):
        certify(w, x, np.inf)
    with pytest.raises(TypeError, match="^lam must be a real scalar"):
        certify(w, x, "1.0")
    with pytest.raises(ValueError, match="^rtol must be >= 0"):
        certify(w, x, 1.0, rtol=-1e-9)
    with pytest.raises(TypeError, match="^rtol must be a real scalar"):
        certify(w, x, 1.0, rtol=None)
    with pytest.raises(np.exceptions.AxisError, match="axis 1 is out of bounds"):
        certify(w, x, 1.0, axis=1)
    with pytest.raises(TypeError, match="^axis must be an int"):
        certify(w, x, 1.0, axis=0.0)
    with pytest.raises(TypeError, match="^w must be array-like"):
        certify([[1.0], [1.0, 2.0]], x, 1.0)
    # certify(...) is keyword-only after lam
    with pytest.raises(TypeError, match="positional argument"):
        certify(w, x, 1.0, None)


def test_certify_pairs_elements_whatever_the_layouts():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((30, 40))
    x = wsprox.prox(w, 0.5)
    for wv, xv in [(w, np.asfortranarray(x)), (np.asfortranarray(w), x), (w.T.copy().T, x[:, :]), (w, x)]:
        assert wsprox.certify(wv, xv, 0.5).ok
    assert not wsprox.certify(w, np.asfortranarray(x).T.copy().T[::-1], 0.5).ok  # rows swapped: rejected
