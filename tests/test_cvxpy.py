"""The cvxpy ground-truth backend against exact rational answers, and the numba backend against it."""

import functools
import warnings

import cvxpy  # noqa: F401  (in the test extra: a missing cvxpy must fail, not skip the suite)
import numpy as np
import pytest
from reference import FAMILIES, family, max_abs_error, prox_exact, row_scale

import wsprox
from wsprox.solvers import cvxpy_backend

#: Families whose exact cluster values are closer than the backend's 1e-7 relative cluster
#: tolerance (magnitudes 1e-30..1e30 in one vector): values are checked, labels are not.
UNRESOLVABLE = {"huge_tiny"}
SIZES = [2, 3, 5, 17, 50, 200]


def _l1_for(w, lam):
    """An L1 strength on the scale of the data, so that it zeroes some but not all entries."""
    return 0.3 * (float(np.median(np.abs(np.asarray(w, np.float64)))) + lam)


def _assert_close_to_exact(x, exact, w, lam, l1, rtol=1e-6):
    """``max |x - exact| <= rtol * scale`` plus the rounding of x's dtype."""
    scale = row_scale(w, lam, l1)
    exact64 = np.array([float(v) for v in exact])
    rounding = float(np.max(np.spacing(np.abs(exact64).astype(x.dtype)), initial=0.0)) if x.dtype != np.float64 else 0
    err = max_abs_error(x.astype(np.float64), exact)
    assert err <= rtol * scale + rounding, f"error {err:.3g} > {rtol:g} * {scale:.3g}"


@functools.cache
def _cvxpy_family(name, d, with_l1):
    """cvxpy answer (x, labels, warned) of a family instance, computed once per session.

    ``warned``: whether the backend warned that the row fails the certificate.
    """
    w, lam = family(name, d, rng=d)
    l1 = _l1_for(w, lam) if with_l1 else 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, labels = wsprox.prox(w, lam, l1=l1, backend="cvxpy", return_clusters=True)
    warned = any("fails wsprox.certify" in str(item.message) for item in caught)
    x.setflags(write=False)
    labels.setflags(write=False)
    return w, lam, l1, x, labels, warned


# ---------------------------------------------------------------------------------------
# against exact answers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("with_l1", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_against_exact(d, with_l1, dtype):
    rng = np.random.default_rng(100 + d)
    w = (rng.standard_normal(d) * 2.0 + 0.5).astype(dtype)
    lam = 0.8
    l1 = 0.4 if with_l1 else 0.0
    x, labels = wsprox.prox(w, lam, l1=l1, backend="cvxpy", return_clusters=True)
    assert x.dtype == dtype and x.shape == (d,)
    exact, exact_labels = prox_exact(w, lam, l1)
    _assert_close_to_exact(x, exact, w, lam, l1)
    if dtype == np.float64:
        assert labels.tolist() == exact_labels


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", [5, 50, 200])
@pytest.mark.parametrize("with_l1", [False, True])
def test_families_against_exact(name, d, with_l1):
    w, lam, l1, x, labels, warned = _cvxpy_family(name, d, with_l1)
    exact, exact_labels = prox_exact(w, lam, l1)
    _assert_close_to_exact(x, exact, w, lam, l1)
    # a warning exactly where the result fails the certificate (l1 = 0; huge_tiny at d >= 50:
    # true clusters closer than the solver's accuracy), none with l1 > 0 (not checked)
    assert warned == (not with_l1 and not wsprox.certify(w, x, lam).ok)
    if name not in UNRESOLVABLE:
        assert labels.tolist() == exact_labels
    # the polish makes clusters bit-identical: as many distinct values as labels
    assert np.unique(x).size == labels.max() + 1
    if with_l1:
        zeros = x[x == 0]
        assert not np.any(np.signbit(zeros))  # snapped to +0.0


@pytest.mark.parametrize("lam", [1.0, 1e300, 1e307])
@pytest.mark.parametrize("with_l1", [False, True])
def test_values_near_the_float64_limit(lam, with_l1):
    """Squared distances of such values overflow float64; the polish compares objectives in
    units of a power of two (there were overflow warnings and an inf-vs-inf comparison)."""
    import warnings

    w = np.array([-1e308, 1e308, 5e307, -3e307, 2e307])
    l1 = 1e306 if with_l1 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, labels = wsprox.prox(w, lam, l1=l1, backend="cvxpy", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam, l1)
    _assert_close_to_exact(x, exact, w, lam, l1)
    assert labels.tolist() == exact_labels


@pytest.mark.parametrize("lam", [0.0, 1e-311, 1e-300])
def test_subnormal_values(lam):
    """Tiny (subnormal) rows are not scaled up by the objective comparison (that overflowed)."""
    w = np.array([1e-310, 3e-310, -2e-310, 5e-311])
    x, labels = wsprox.prox(w, lam, backend="cvxpy", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam)
    _assert_close_to_exact(x, exact, w, lam, 0.0)
    assert labels.tolist() == exact_labels


@pytest.mark.parametrize(
    ("w", "lam"),
    [
        ([0.0, 1e-8, 1.0], 1e-10),  # true clusters closer than CLUSTER_RTOL * s: redone at finer tolerances
        ([2**62, 2**62 + 1, -(2**62), 5], 1.0),  # a small singleton cluster beside huge ones keeps its digits
        ([1e308, 1.7e308, -1.7e308, 0.0], 1e307),  # centring would overflow: solved in units of a power of two
    ],
    ids=["close-clusters", "small-beside-huge", "centring-overflow"],
)
def test_hard_rows_are_certified(w, lam):
    w = np.asarray(w)
    x, labels = wsprox.prox(w, lam, backend="cvxpy", return_clusters=True)
    assert wsprox.certify(w, x, lam).ok
    exact, exact_labels = prox_exact(w.astype(np.float64), lam)
    _assert_close_to_exact(x, exact, w.astype(np.float64), lam, 0.0)
    assert labels.tolist() == exact_labels


@pytest.mark.parametrize(
    ("w", "lam"),
    [
        ([0.0, 3.0, 1e12], 1.0),  # exact [1, 3, 1e12 - 1]: a gap of 2e-12 s, below the solver's accuracy
        ([0.0, 3.0, 1e12, -1e12], 1.0),
    ],
)
def test_uncertified_rows_warn(w, lam):
    """Where even the finest cluster tolerance cannot recover the clusters, the result says so."""
    w = np.asarray(w)
    with pytest.warns(RuntimeWarning, match="fails wsprox.certify") as caught:
        x = wsprox.prox(w, lam, backend="cvxpy")
    assert len(caught) == 1
    assert not wsprox.certify(w, x, lam).ok  # the warning is not a false alarm
    exact, _ = prox_exact(w.astype(np.float64), lam)
    assert wsprox.certify(w, np.asarray(exact, dtype=np.float64), lam).ok


def test_certified_rows_do_not_warn():
    w = np.random.default_rng(3).standard_normal((4, 60))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = wsprox.prox(w, 0.5, axis=1, backend="cvxpy")
    assert wsprox.certify(w, x, 0.5, axis=1).ok


def test_subnormal_rows_with_floating_point_traps():
    w = np.random.default_rng(4).standard_normal(20) * 1e-310
    with np.errstate(all="raise"):
        x = wsprox.prox(w, 1e-310, backend="cvxpy")
    assert wsprox.certify(w, x, 1e-310).ok


def test_pooling_at_the_boundary_and_integer_rows_are_exact():
    """Pooling exactly at the boundary (left mean == right mean) gives one exact cluster."""
    x, labels = wsprox.prox(np.array([0.0, 1.0]), 0.5, backend="cvxpy", return_clusters=True)
    np.testing.assert_array_equal(x, [0.5, 0.5])
    np.testing.assert_array_equal(labels, [0, 0])
    w, lam = family("integer_exact", 40, rng=7)
    x, labels = wsprox.prox(w, lam, backend="cvxpy", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam)
    assert labels.tolist() == exact_labels
    assert max_abs_error(x, exact) <= 1e-14 * row_scale(w, lam)  # a few float64 roundings, not solver error


@pytest.mark.parametrize(
    ("w", "lam", "l1", "expected", "expected_labels"),
    [
        ([0.0, 1.0, 5.0], 1.0, 1.0, [0.0, 0.0, 3.0], [0, 0, 1]),  # prox_R = [1, 1, 4]: 1 sits exactly at l1
        ([0.0, 1.0], 0.5, 0.5, [0.0, 0.0], [0, 0]),  # merge boundary and threshold boundary at once
        ([-3.0, -1.0, 2.0, 2.0, 7.0], 2.0, 1.5, None, None),
    ],
)
def test_degenerate_l1_boundaries(w, lam, l1, expected, expected_labels):
    w = np.array(w)
    x, labels = wsprox.prox(w, lam, l1=l1, backend="cvxpy", return_clusters=True)
    exact, exact_labels = prox_exact(w, lam, l1)
    if expected is not None:
        assert exact == expected and exact_labels == expected_labels
    assert labels.tolist() == exact_labels
    assert max_abs_error(x, exact) <= 1e-14 * row_scale(w, lam, l1)
    assert not np.any(np.signbit(x[x == 0]))


def test_batch_with_axis():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 17))
    for axis, arr in [(1, w), (0, w.T.copy()), (-1, w)]:
        x, labels = wsprox.prox(arr, 0.6, l1=0.1, axis=axis, backend="cvxpy", return_clusters=True)
        assert x.shape == labels.shape == arr.shape
        slices = np.moveaxis(arr, axis, -1)
        x_slices = np.moveaxis(x, axis, -1)
        label_slices = np.moveaxis(labels, axis, -1)
        for row, x_row, lab_row in zip(slices, x_slices, label_slices):
            exact, exact_labels = prox_exact(row, 0.6, 0.1)
            _assert_close_to_exact(x_row, exact, row, 0.6, 0.1)
            assert lab_row.tolist() == exact_labels
    # axis=None on a 2-D array: one problem of size 51
    x = wsprox.prox(w, 0.6, backend="cvxpy")
    exact, _ = prox_exact(w.ravel(), 0.6)
    _assert_close_to_exact(x.ravel(), exact, w.ravel(), 0.6, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [None, 1])
def test_input_not_modified_and_float32_batches(dtype, axis):
    """A strided, read-only input is left as it was; float32 batches are exact up to one float32 rounding."""
    w = (np.random.default_rng(9).standard_normal((3, 24)) * 3.0).astype(dtype)[:, ::2]
    w.setflags(write=False)
    before = w.copy()
    x, labels = wsprox.prox(w, 0.7, l1=0.2, axis=axis, backend="cvxpy", return_clusters=True)
    assert x.dtype == dtype and x.shape == w.shape and not np.shares_memory(x, w)
    np.testing.assert_array_equal(w, before)
    rows = [w.ravel()] if axis is None else list(w)
    x_rows = [x.ravel()] if axis is None else list(x)
    lab_rows = [labels.ravel()] if axis is None else list(labels)
    for row, x_row, lab_row in zip(rows, x_rows, lab_rows):
        exact, exact_labels = prox_exact(row, 0.7, 0.2)
        _assert_close_to_exact(x_row, exact, row, 0.7, 0.2)
        if dtype == np.float64:
            assert lab_row.tolist() == exact_labels


def test_labels_and_docstring_example():
    x, labels = wsprox.prox(np.array([0.0, 1.0, 5.0]), 2.0, backend="cvxpy", return_clusters=True)
    np.testing.assert_allclose(x, [1.5, 1.5, 3.0], rtol=0, atol=1e-12)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [0, 0, 1])
    assert wsprox.prox(np.array([0.0, 1.0, 5.0]), 2.0, backend="cvxpy", return_clusters=False).shape == (3,)


def test_solve_directly_small_sizes():
    # d = 1: only the L1 term acts
    x, labels = cvxpy_backend.solve(np.array([[3.0], [-0.2]]), 1.0, 0.5, True)
    np.testing.assert_allclose(x, [[2.5], [0.0]], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, [[0], [0]])
    # lam = 0, constant row
    x, labels = cvxpy_backend.solve(np.array([[3.0, 3.0, 3.0]]), 0.0, 0.0, True)
    np.testing.assert_array_equal(x, [[3.0, 3.0, 3.0]])
    np.testing.assert_array_equal(labels, [[0, 0, 0]])
    x, labels = cvxpy_backend.solve(np.array([[3.0, 1.0]]), 0.25, 0.0, False)
    np.testing.assert_allclose(x, [[2.75, 1.25]], rtol=0, atol=1e-12)
    assert labels is None


def test_info_and_size_refusal(monkeypatch):
    info = wsprox.backends()["cvxpy"]
    assert info.available and info.dtypes == ("float64",) and not info.batched
    assert info.max_size == 1000

    def must_not_run(*args, **kwargs):
        raise AssertionError("the solver ran on a refused problem")

    monkeypatch.setattr(cvxpy_backend, "solve", must_not_run)
    with pytest.raises(
        ValueError,
        match=r"d=1001 is too large for backend 'cvxpy' \(at most 1000: the quadratic program",
    ):
        wsprox.prox(np.zeros(1001), 1.0, backend="cvxpy")
    with pytest.raises(ValueError, match="too large"):
        wsprox.prox(np.zeros((2, 1001)), 1.0, axis=1, backend="cvxpy")


def test_non_optimal_status_raises(monkeypatch):
    monkeypatch.setattr(cvxpy_backend, "SOLVER_OPTIONS", ({"max_iter": 1},))
    with pytest.raises(RuntimeError, match="status 'user_limit'"):
        wsprox.prox(np.random.default_rng(0).standard_normal(20), 0.5, backend="cvxpy")


def test_polish_merges_and_snaps():
    # exact answer [1, 1, 2, 2] (z = w + lam * [1, 1/3, -1/3, -1] pools {0, 1} and {2, 3})
    w = np.array([0.3, 0.7, 2.3, 2.7])
    raw = np.array([1.0, 1.0 + 1e-8, 2.0 - 3e-8, 2.0])
    x, labels = cvxpy_backend.polish(raw, w, 0.75, 0.0, scale=3.0)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    assert x[0] == x[1] and x[2] == x[3]
    np.testing.assert_allclose(x, [1.0, 1.0, 2.0, 2.0], rtol=0, atol=1e-15)
    # with l1: values within the tolerance of zero become +0.0 and share one label
    x, labels = cvxpy_backend.polish(np.array([-2e-8, 3e-8, 1.0]), np.array([-0.1, 0.1, 1.6]), 0.0, 0.6, scale=1.0)
    np.testing.assert_array_equal(x, [0.0, 0.0, 1.0])
    assert not np.any(np.signbit(x))
    np.testing.assert_array_equal(labels, [0, 0, 1])


# ---------------------------------------------------------------------------------------
# the numba backend against the ground truth
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("d", [5, 50, 200])
@pytest.mark.parametrize("with_l1", [False, True])
def test_numba_agrees_with_cvxpy_on_families(name, d, with_l1):
    w, lam, l1, x_cvx, labels_cvx, _ = _cvxpy_family(name, d, with_l1)
    x, labels = wsprox.prox(w, lam, l1=l1, backend="numba", return_clusters=True)
    assert x.dtype == x_cvx.dtype == w.dtype
    scale = row_scale(w, lam, l1)
    rounding = np.spacing(np.abs(x_cvx)) if w.dtype == np.float32 else 0.0
    assert np.all(np.abs(x.astype(np.float64) - x_cvx) <= 1e-6 * scale + 2 * rounding)
    if name not in UNRESOLVABLE and w.dtype == np.float64:
        np.testing.assert_array_equal(labels, labels_cvx)


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_l1", [False, True])
def test_numba_agrees_with_cvxpy_random(d, seed, with_l1):
    rng = np.random.default_rng(1000 * seed + d)
    w = rng.standard_normal(d) * rng.uniform(0.1, 10)
    lam = float(rng.uniform(0.05, 3.0))
    l1 = float(rng.uniform(0.0, 1.0)) if with_l1 else 0.0
    x_cvx, labels_cvx = wsprox.prox(w, lam, l1=l1, backend="cvxpy", return_clusters=True)
    x, labels = wsprox.prox(w, lam, l1=l1, backend="numba", return_clusters=True)
    assert np.max(np.abs(x - x_cvx)) <= 1e-6 * row_scale(w, lam, l1)
    np.testing.assert_array_equal(labels, labels_cvx)
