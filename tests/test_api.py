"""The public numpy API: dtypes, shapes, axis, out=, clusters, errors, registry, penalty."""

import itertools

import numpy as np
import pytest

import wsprox


def brute_penalty(w):
    w = np.asarray(w, dtype=np.float64).ravel()
    d = w.size
    if d <= 1:
        return 0.0
    return float(np.abs(w[:, None] - w[None, :]).sum() / 2 / (d - 1))


RNG = np.random.default_rng(20241123)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float16),
        (np.int8, np.float64),
        (np.int64, np.float64),
        (np.uint16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_output_dtype(dtype, expected):
    w = (RNG.standard_normal(50) * 5).astype(dtype)
    x = wsprox.prox(w, 0.3)
    assert x.dtype == expected
    assert x.shape == w.shape
    ref = wsprox.prox(w.astype(np.float64), 0.3)
    tol = {np.float16: 2e-2, np.float32: 1e-5}.get(expected, 1e-12)
    np.testing.assert_allclose(x.astype(np.float64), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "w",
    [
        np.ones(3, np.complex128),
        np.array([1, "a"], dtype=object),
        np.array(["1.0", "2.0"]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.array([1], dtype="timedelta64[s]"),
    ],
    ids=["complex", "object", "str", "datetime", "timedelta"],
)
def test_unsupported_dtype_is_type_error(w):
    with pytest.raises(TypeError, match=r"w has unsupported dtype"):
        wsprox.prox(w, 1.0)
    with pytest.raises(TypeError, match=r"w has unsupported dtype"):
        wsprox.penalty(w)


def test_python_lists_and_scalars():
    np.testing.assert_array_equal(wsprox.prox([0, 1, 5], 2.0), [1.5, 1.5, 3.0])
    x = wsprox.prox(3.5, 1.0)
    assert x.shape == () and x.dtype == np.float64 and float(x) == 3.5
    x = wsprox.prox(3.5, 1.0, l1=1.0)
    assert float(x) == 2.5


def test_masked_array_with_masked_entries_is_value_error():
    w = np.ma.array([1.0, 2.0, 30.0], mask=[False, False, True])
    for call in (lambda: wsprox.prox(w, 1.0), lambda: wsprox.penalty(w), lambda: wsprox.certify(w, w.data, 1.0)):
        with pytest.raises(ValueError, match=r"^w is a masked array with 1 masked entries"):
            call()
    x = wsprox.prox(np.ma.array([0.0, 1.0, 5.0], mask=False), 2.0)  # nothing masked: the data is used
    assert type(x) is np.ndarray
    np.testing.assert_array_equal(x, [1.5, 1.5, 3.0])


def test_masked_out_with_masked_entries_is_value_error():
    """Results written under ``out``'s mask would stay hidden: refused, and ``out`` untouched."""
    out = np.ma.array(np.full(3, 7.0), mask=[False, True, False])
    with pytest.raises(ValueError, match=r"^out is a masked array with 1 masked entries"):
        wsprox.prox(np.array([0.0, 1.0, 5.0]), 2.0, out=out)
    np.testing.assert_array_equal(out.data, [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(out.mask, [False, True, False])
    out = np.ma.array(np.zeros(3), mask=False)  # nothing masked: written like an ndarray
    assert wsprox.prox(np.array([0.0, 1.0, 5.0]), 2.0, out=out) is out
    np.testing.assert_array_equal(out.data, [1.5, 1.5, 3.0])
    assert not np.ma.is_masked(out)


def test_ragged_list_is_type_error():
    with pytest.raises(TypeError, match="w must be array-like"):
        wsprox.prox([[1.0, 2.0], [3.0]], 1.0)


# --------------------------------------------------------------------------- strengths


@pytest.mark.parametrize("name", ["lam", "l1"])
@pytest.mark.parametrize("bad", [-1.0, -1e-300, np.inf, -np.inf, np.nan])
def test_bad_strength_value(name, bad):
    kwargs = {"lam": 1.0, "l1": 0.0}
    kwargs[name] = bad
    lam = kwargs.pop("lam")
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        wsprox.prox(np.ones(3), lam, **kwargs)


@pytest.mark.parametrize("name", ["lam", "l1"])
@pytest.mark.parametrize("bad", [None, "1.0", 1j, True, np.bool_(False), [1.0], np.ones(2)])
def test_bad_strength_type(name, bad):
    kwargs = {"lam": 1.0, "l1": 0.0}
    kwargs[name] = bad
    lam = kwargs.pop("lam")
    with pytest.raises(TypeError, match=rf"^{name} must be a real scalar"):
        wsprox.prox(np.ones(3), lam, **kwargs)


@pytest.mark.parametrize("lam", [1, np.float32(1.0), np.int64(1), np.array(1.0), 1.0])
def test_strength_accepts_real_scalars(lam):
    np.testing.assert_array_equal(wsprox.prox([0.0, 1.0, 5.0], lam), [1.0, 1.0, 4.0])


def test_return_clusters_must_be_bool():
    with pytest.raises(TypeError, match="return_clusters must be a bool"):
        wsprox.prox(np.ones(3), 1.0, return_clusters="yes")


# --------------------------------------------------------------------------- non-finite input


def test_non_finite_message_counts_and_locates():
    w = np.zeros((3, 4))
    w[1, 2] = np.nan
    w[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite values .* first at index \(1, 2\)"):
        wsprox.prox(w, 1.0)
    with pytest.raises(ValueError, match=r"1 non-finite value \(NaN or inf\), the first at index 4$"):
        wsprox.prox(np.array([0, 1, 2, 3, -np.inf]), 1.0)
    with pytest.raises(ValueError, match="w must be finite"):
        wsprox.penalty(w)


# --------------------------------------------------------------------------- trivial sizes


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4)])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_empty(shape, axis):
    w = np.empty(shape, np.float32)
    x, labels = wsprox.prox(w, 1.0, axis=axis, return_clusters=True)
    assert x.shape == shape and x.dtype == np.float32
    assert labels.shape == shape and labels.dtype == np.int64


def test_d_equal_one_is_identity_or_soft_threshold():
    w = np.array([[1.5], [-0.2], [3.0]])
    np.testing.assert_array_equal(wsprox.prox(w, 10.0, axis=1), w)
    np.testing.assert_array_equal(wsprox.prox(w, 10.0, l1=0.5, axis=1), [[1.0], [0.0], [2.5]])
    assert not np.signbit(wsprox.prox(w, 10.0, l1=0.5, axis=1)).any()
    x, labels = wsprox.prox(w, 10.0, axis=1, return_clusters=True)
    np.testing.assert_array_equal(labels, 0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_lam_zero_is_identity_bitwise(dtype):
    w = RNG.standard_normal((4, 33)).astype(dtype)
    w[0, :5] = w[0, 5]
    w[1, 0] = -0.0
    x, labels = wsprox.prox(w, 0.0, axis=1, return_clusters=True)
    assert x.tobytes() == w.tobytes()
    for row, lab in zip(w, labels):
        np.testing.assert_array_equal(lab, np.unique(row, return_inverse=True)[1])


# --------------------------------------------------------------------------- inputs are never modified


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("layout", ["strided", "contiguous", "fortran"])
def test_input_not_modified(dtype, axis, layout):
    w = RNG.standard_normal((20, 30)).astype(dtype)
    w = {"strided": w[:, ::2], "contiguous": w, "fortran": np.asfortranarray(w)}[layout]
    before = w.copy()
    x = wsprox.prox(w, 0.5, l1=0.1, axis=axis, return_clusters=True)[0]
    assert not np.shares_memory(x, w)
    np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("axis", [None, 1])
def test_backend_returning_its_input_does_not_alias(axis):
    """A backend may return the rows it was given (views of ``w`` when no copy was needed): prox copies."""
    wsprox.register_backend("echo", lambda w, lam, l1, rc: (w, None), description="returns its input")
    try:
        for w in (RNG.standard_normal(12), RNG.standard_normal((3, 4)), np.asfortranarray(RNG.standard_normal((3, 4)))):
            before = w.copy()
            x = wsprox.prox(w, 1.0, axis=axis if w.ndim == 2 else None, backend="echo")
            np.testing.assert_array_equal(x, before)
            assert not np.shares_memory(x, w)
            x[...] = 5.0
            np.testing.assert_array_equal(w, before)
    finally:
        wsprox.unregister_backend("echo")


def test_lam_zero_result_does_not_alias_input():
    w = RNG.standard_normal(10)
    x = wsprox.prox(w, 0.0)
    x[0] = 123.0
    assert w[0] != 123.0


# --------------------------------------------------------------------------- out=


def test_out_is_filled_and_returned():
    w = RNG.standard_normal((5, 7)).astype(np.float32)
    out = np.empty_like(w)
    res = wsprox.prox(w, 0.2, axis=0, out=out)
    assert res is out
    np.testing.assert_array_equal(out, wsprox.prox(w, 0.2, axis=0))


def test_out_may_be_w():
    w = RNG.standard_normal(100)
    expected = wsprox.prox(w, 0.2)
    res, labels = wsprox.prox(w, 0.2, out=w, return_clusters=True)
    assert res is w
    np.testing.assert_array_equal(w, expected)
    assert labels.shape == w.shape


@pytest.mark.parametrize("dtype", [">f8", "<f8", ">f4", "<f4"])
def test_out_may_be_w_in_either_byte_order(dtype):
    w = RNG.standard_normal((3, 50)).astype(dtype)
    expected = wsprox.prox(w.astype(w.dtype.newbyteorder("=")), 0.2, axis=1)
    res = wsprox.prox(w, 0.2, axis=1, out=w)
    assert res is w and w.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(w, expected)
    other = np.zeros(w.shape, np.dtype(dtype).newbyteorder("S"))  # the swapped order of w's
    wsprox.prox(expected, 0.0, axis=1, out=other)
    np.testing.assert_array_equal(other, expected)


def test_out_noncontiguous():
    w = RNG.standard_normal((6, 8))
    out = np.zeros((8, 6)).T
    wsprox.prox(w, 0.2, axis=1, out=out)
    np.testing.assert_array_equal(out, wsprox.prox(w, 0.2, axis=1))


@pytest.mark.parametrize(
    ("out", "exc", "msg"),
    [
        (np.empty(4), ValueError, r"out has shape \(4,\), expected \(5,\)"),
        (np.empty(5, np.float32), TypeError, "out has dtype float32, expected float64"),
        (np.empty(5, ">f4"), TypeError, "out has dtype >f4, expected float64"),
        ([0.0] * 5, TypeError, "out must be a numpy.ndarray"),
    ],
)
def test_bad_out(out, exc, msg):
    with pytest.raises(exc, match=msg):
        wsprox.prox(np.arange(5.0), 1.0, out=out)


def test_readonly_out():
    out = np.zeros(5)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        wsprox.prox(np.arange(5.0), 1.0, out=out)


def test_out_for_int_input_must_be_float64():
    with pytest.raises(TypeError, match="expected float64"):
        wsprox.prox(np.arange(5), 1.0, out=np.zeros(5, np.int64))


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"lam": -1.0}, ValueError, "lam must be >= 0"),
        ({"lam": 1.0, "backend": "nope"}, ValueError, "unknown backend 'nope'"),
        ({"lam": 1.0, "axis": 3}, np.exceptions.AxisError, "axis 3 is out of bounds"),
        ({"lam": 1.0, "l1": np.nan}, ValueError, "l1 must be finite"),
    ],
)
def test_failed_call_leaves_out_untouched(kwargs, exc, message):
    w = np.arange(6.0)
    out = np.full(6, 7.0)
    with pytest.raises(exc, match=message):
        wsprox.prox(w, out=out, **kwargs)
    np.testing.assert_array_equal(out, 7.0)
    bad = w.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="w must be finite: 1 non-finite value"):
        wsprox.prox(bad, 1.0, out=out)
    np.testing.assert_array_equal(out, 7.0)


# --------------------------------------------------------------------------- axis


def test_axis_none_flattens():
    w = RNG.standard_normal((4, 5, 6))
    x = wsprox.prox(w, 0.7)
    np.testing.assert_array_equal(x, wsprox.prox(w.ravel(), 0.7).reshape(w.shape))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axis_matches_slice_loop(axis, dtype):
    w = RNG.standard_normal((4, 5, 6)).astype(dtype)
    x, labels = wsprox.prox(w, 0.7, l1=0.05, axis=axis, return_clusters=True)
    assert x.flags.c_contiguous
    moved = np.moveaxis(w, axis, -1)
    xm = np.moveaxis(x, axis, -1)
    lm = np.moveaxis(labels, axis, -1)
    for idx in itertools.product(*(range(s) for s in moved.shape[:-1])):
        xr, lr = wsprox.prox(moved[idx], 0.7, l1=0.05, return_clusters=True)
        assert xm[idx].tobytes() == xr.tobytes()
        np.testing.assert_array_equal(lm[idx], lr)


@pytest.mark.parametrize("axis", [3, -4, 10])
def test_axis_out_of_bounds(axis):
    with pytest.raises(np.exceptions.AxisError, match=f"axis {axis} is out of bounds"):
        wsprox.prox(np.ones((2, 3, 4)), 1.0, axis=axis)
    with pytest.raises(ValueError, match="out of bounds"):
        wsprox.penalty(np.ones((2, 3, 4)), axis=axis)


@pytest.mark.parametrize("axis", [1.0, "0", (0, 1), True])
def test_axis_bad_type(axis):
    with pytest.raises(TypeError, match="axis must be an int or None"):
        wsprox.prox(np.ones((2, 3)), 1.0, axis=axis)


def test_axis_on_zero_dim_is_error():
    with pytest.raises(np.exceptions.AxisError, match="axis 0 is out of bounds for an array of dimension 0"):
        wsprox.prox(np.float64(1.0), 1.0, axis=0)


# --------------------------------------------------------------------------- clusters


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("l1", [0.0, 0.4])
def test_labels_number_groups_of_equal_value(dtype, l1):
    w = (RNG.standard_normal((6, 200)) * 2).astype(dtype)
    x, labels = wsprox.prox(w, 1.0, l1=l1, axis=1, return_clusters=True)
    assert labels.dtype == np.int64
    for xr, lr in zip(x, labels):
        values, inverse = np.unique(xr, return_inverse=True)
        np.testing.assert_array_equal(lr, inverse)
        assert lr.min() == 0 and lr.max() == len(values) - 1
    assert labels.max() < 200  # the prox really shares weights at this strength


def test_labels_axis_none_are_global():
    w = RNG.standard_normal((3, 40))
    x, labels = wsprox.prox(w, 2.0, return_clusters=True)
    np.testing.assert_array_equal(labels.ravel(), np.unique(x.ravel(), return_inverse=True)[1])


def test_deterministic_bitwise():
    w = RNG.standard_normal((8, 3000)).astype(np.float32)
    a = wsprox.prox(w, 0.1, axis=1, return_clusters=True)
    b = wsprox.prox(w, 0.1, axis=1, return_clusters=True)
    assert a[0].tobytes() == b[0].tobytes()
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- registry


def test_backends_lists_builtins():
    info = wsprox.backends()
    assert {"numba", "cvxpy", "cuda"} <= set(info)
    numba_info = info["numba"]
    assert numba_info.available and numba_info.reason is None
    assert numba_info.array_kinds == ("numpy",) and numba_info.batched
    assert numba_info.dtypes == ("float32", "float64")
    assert numba_info.max_size == 2**32 - 1
    for entry in info.values():
        assert isinstance(entry, wsprox.BackendInfo)
        assert entry.description
        assert entry.available or (isinstance(entry.reason, str) and entry.reason)


def test_unknown_backend_lists_registered():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; registered backends: auto, numba, cvxpy, cuda"):
        wsprox.prox(np.ones(3), 1.0, backend="nope")
    with pytest.raises(TypeError, match="backend must be a str"):
        wsprox.prox(np.ones(3), 1.0, backend=3)


@pytest.fixture
def toy_backend():
    calls = []

    def solve(w, lam, l1, return_clusters):
        calls.append((w.shape, w.dtype, lam, l1, return_clusters))
        x = np.repeat(w.mean(axis=1, keepdims=True), w.shape[1], axis=1)
        return x, (np.zeros(w.shape, np.int64) if return_clusters else None)

    wsprox.register_backend("toy", solve, description="mean of each row", dtypes=("float64",), max_size=50)
    yield calls
    wsprox.unregister_backend("toy")


def test_register_toy_backend(toy_backend):
    assert "toy" in wsprox.backends()
    info = wsprox.backends()["toy"]
    assert info.available and not info.batched and info.max_size == 50 and info.dtypes == ("float64",)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    x, labels = wsprox.prox(w, 1.0, axis=1, backend="toy", return_clusters=True)
    assert toy_backend == [((3, 4), np.float64, 1.0, 0.0, True)]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.repeat([[1.5], [5.5], [9.5]], 4, axis=1))
    np.testing.assert_array_equal(labels, 0)
    with pytest.raises(ValueError, match=r"d=51 is too large for backend 'toy' \(at most 50\)"):
        wsprox.prox(np.ones(51), 1.0, backend="toy")
    solve = wsprox.backends  # never called: the size is refused first
    wsprox.register_backend("toy", solve, description="x", max_size=50, max_size_reason="a toy", replace=True)
    with pytest.raises(ValueError, match=r"d=51 is too large for backend 'toy' \(at most 50: a toy\)"):
        wsprox.prox(np.ones(51), 1.0, backend="toy")
    with pytest.raises(ValueError, match="max_size_reason must be a str, and given only with max_size"):
        wsprox.register_backend("toy", solve, description="x", max_size_reason="why", replace=True)
    with pytest.raises(ValueError, match="max_size_reason must be a str"):
        wsprox.register_backend("toy", solve, description="x", max_size=5, max_size_reason=3, replace=True)


def test_register_errors(toy_backend):
    solve = lambda w, lam, l1, rc: (w.copy(), None)  # noqa: E731
    with pytest.raises(ValueError, match="already registered"):
        wsprox.register_backend("toy", solve, description="x")
    wsprox.register_backend("toy", solve, description="copy", replace=True)
    assert wsprox.backends()["toy"].description == "copy"
    with pytest.raises(ValueError, match="reserved"):
        wsprox.register_backend("auto", solve, description="x")
    for not_callable in (3, None):
        with pytest.raises(TypeError, match="solve must be callable"):
            wsprox.register_backend("bad", not_callable, description="x")
    for bad_name in ("", 3, None):
        with pytest.raises(TypeError, match="backend name must be a non-empty str"):
            wsprox.register_backend(bad_name, solve, description="x")
    assert "bad" not in wsprox.backends()
    with pytest.raises(ValueError, match="dtypes must be"):
        wsprox.register_backend("bad", solve, description="x", dtypes=("float16",))
    with pytest.raises(ValueError, match="array_kinds must be"):
        wsprox.register_backend("bad", solve, description="x", array_kinds=("tpu",))
    with pytest.raises(ValueError, match="max_size must be"):
        wsprox.register_backend("bad", solve, description="x", max_size=0)
    with pytest.raises(ValueError, match="unknown backend"):
        wsprox.unregister_backend("bad")


def test_unavailable_backend_says_why():
    wsprox.register_backend(
        "missing",
        lambda *a: None,
        description="needs a package",
        availability=lambda: (False, "pip install something"),
    )
    try:
        info = wsprox.backends()["missing"]
        assert not info.available and info.reason == "pip install something"
        with pytest.raises(ValueError, match=r"backend 'missing' is not available here: pip install something"):
            wsprox.prox(np.ones(3), 1.0, backend="missing")
    finally:
        wsprox.unregister_backend("missing")


def test_broken_backend_result_is_caught():
    wsprox.register_backend("broken", lambda w, lam, l1, rc: (w[:, :1], None), description="wrong shape")
    try:
        with pytest.raises(RuntimeError, match="backend 'broken' returned"):
            wsprox.prox(np.ones(3), 1.0, backend="broken")
    finally:
        wsprox.unregister_backend("broken")


@pytest.mark.parametrize(
    "labels",
    [np.zeros((1, 2), np.int64), [[0, 0, 0]], np.zeros(3, np.int64), np.zeros((1, 3))],
    ids=["shape", "list", "1-d", "float"],
)
def test_broken_backend_labels_are_caught(labels):
    """Labels of the wrong shape or type: a RuntimeError naming the backend, and ``out`` is left as it was."""
    wsprox.register_backend("badlabels", lambda w, lam, l1, rc: (w.copy(), labels), description="wrong labels")
    try:
        out = np.full(3, 7.0)
        with pytest.raises(RuntimeError, match=r"backend 'badlabels' returned labels that are not an integer array of"):
            wsprox.prox(np.arange(3.0), 1.0, backend="badlabels", return_clusters=True, out=out)
        np.testing.assert_array_equal(out, np.full(3, 7.0))
        x = wsprox.prox(np.arange(3.0), 1.0, backend="badlabels", out=out)  # labels not asked for: not checked
        assert x is out
        np.testing.assert_array_equal(out, np.arange(3.0))
    finally:
        wsprox.unregister_backend("badlabels")


@pytest.mark.parametrize("result", [np.zeros((1, 3)), 3.0, (np.zeros((1, 3)),)], ids=["array", "scalar", "1-tuple"])
def test_backend_result_that_is_not_a_pair_is_caught(result):
    wsprox.register_backend("unpaired", lambda w, lam, l1, rc: result, description="not (x, labels)")
    try:
        with pytest.raises(
            RuntimeError, match=r"backend 'unpaired' returned .*, expected a tuple \(x, labels or None\)"
        ):
            wsprox.prox(np.arange(3.0), 1.0, backend="unpaired")
    finally:
        wsprox.unregister_backend("unpaired")


def test_backend_labels_of_another_integer_dtype_come_back_int64():
    wsprox.register_backend(
        "uint32labels", lambda w, lam, l1, rc: (w.copy(), np.zeros(w.shape, np.uint32)), description="uint32 ids"
    )
    try:
        _, labels = wsprox.prox(np.arange(3.0), 1.0, backend="uint32labels", return_clusters=True)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, [0, 0, 0])
    finally:
        wsprox.unregister_backend("uint32labels")


def test_failing_availability_probe_is_reported():
    def probe():
        raise OSError("driver exploded")

    wsprox.register_backend("flaky", lambda *a: None, description="x", availability=probe)
    try:
        info = wsprox.backends()["flaky"]
        assert not info.available and "driver exploded" in info.reason
    finally:
        wsprox.unregister_backend("flaky")


# --------------------------------------------------------------------------- penalty


def test_penalty_does_not_depend_on_memory_layout():
    W = np.random.default_rng(12).standard_normal((7, 301))
    for axis in (0, 1, -1):
        expected = wsprox.penalty(W, axis=axis)
        for layout in (np.asfortranarray(W), W[::-1][::-1], np.ascontiguousarray(W.T).T):
            np.testing.assert_array_equal(wsprox.penalty(layout, axis=axis), expected)


@pytest.mark.parametrize("d", [0, 1, 2, 3, 10, 101])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_penalty_matches_pairwise_sum(d, dtype):
    w = (RNG.standard_normal(d) * 10).astype(dtype)
    value = wsprox.penalty(w)
    assert isinstance(value, float)
    assert value == pytest.approx(brute_penalty(w), rel=1e-12, abs=1e-12)


def test_penalty_axis():
    w = RNG.standard_normal((3, 4, 5))
    for axis in range(-3, 3):
        values = wsprox.penalty(w, axis=axis)
        moved = np.moveaxis(w, axis, -1)
        assert values.shape == moved.shape[:-1] and values.dtype == np.float64
        for idx in itertools.product(*(range(s) for s in moved.shape[:-1])):
            assert values[idx] == pytest.approx(brute_penalty(moved[idx]), rel=1e-12)
    assert wsprox.penalty(w) == pytest.approx(brute_penalty(w), rel=1e-12)


def test_penalty_exact_on_integers_and_invariances():
    w = RNG.integers(-1000, 1000, 500)
    exact = sum(abs(int(a) - int(b)) for a, b in itertools.combinations(w.tolist(), 2)) / 499
    assert wsprox.penalty(w) == pytest.approx(exact, rel=1e-15)
    assert wsprox.penalty(w + 12345) == wsprox.penalty(w)
    assert wsprox.penalty(RNG.permutation(w)) == wsprox.penalty(w)
    assert wsprox.penalty(np.full(7, 3.0)) == 0.0
    assert wsprox.penalty([[1.0]], axis=1).tolist() == [0.0]


def test_prox_decreases_the_objective():
    w = RNG.standard_normal(300)
    lam = 0.8
    x = wsprox.prox(w, lam)

    def objective(u):
        return 0.5 * np.sum((u - w) ** 2) + lam * wsprox.penalty(u)

    best = objective(x)
    for _ in range(20):
        assert best <= objective(x + 1e-3 * RNG.standard_normal(300)) + 1e-12
    assert best < objective(w)


# --------------------------------------------------------------------------- memory layouts


def strided_views():
    base = np.random.default_rng(11).standard_normal((6, 8, 10))
    return [
        base.T,
        base[:, ::-1],
        base[::-1, :, ::2],
        base.transpose(1, 0, 2)[::2],
        np.asfortranarray(base),
        base[:, 3],
        base[..., ::-3].T,
        base.swapaxes(0, 2)[::-1],
        np.broadcast_to(base[0, 0], (6, 8, 10)),  # stride 0: not dense in memory
        np.broadcast_to(base[:, :1, :], (6, 8, 10)).transpose(2, 0, 1),
    ]


@pytest.mark.parametrize("k", range(10))
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_strided_views_match_copies_bitwise(k, axis):
    view = strided_views()[k]
    x, labels = wsprox.prox(view, 0.3, l1=0.01, axis=axis, return_clusters=True)
    xc, lc = wsprox.prox(view.copy(), 0.3, l1=0.01, axis=axis, return_clusters=True)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(labels, lc)
    out = np.zeros_like(view)
    wsprox.prox(view, 0.3, l1=0.01, axis=axis, out=out)
    np.testing.assert_array_equal(out, xc)


def test_transposed_input_is_not_copied(monkeypatch):
    """axis=None takes a dense array in memory order: the backend sees a view of w."""
    from wsprox import _registry

    w = np.asfortranarray(np.random.default_rng(5).standard_normal((300, 200)))
    seen = []
    numba_backend = _registry.get_backend("numba")
    original = numba_backend.solve

    def spy(rows, lam, l1, return_clusters):
        seen.append(np.shares_memory(rows, w))
        return original(rows, lam, l1, return_clusters)

    monkeypatch.setattr(numba_backend, "solve", spy)
    x = wsprox.prox(w, 0.1)
    assert seen == [True]
    assert x.flags.f_contiguous  # the result keeps the input's layout
    np.testing.assert_array_equal(x, wsprox.prox(np.ascontiguousarray(w), 0.1))


def test_broadcast_input_matches_copy():
    w = np.broadcast_to(np.array([0.0, 1.0, 5.0]), (2, 3))
    x, labels = wsprox.prox(w, 1.0, return_clusters=True)
    np.testing.assert_array_equal(x, [[0.8, 1.0, 4.2], [0.8, 1.0, 4.2]])
    np.testing.assert_array_equal(labels, [[0, 1, 2], [0, 1, 2]])


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">i4"])
def test_non_native_byte_order(dtype):
    w = np.array([0.0, 1.0, 5.0]).astype(dtype)
    x = wsprox.prox(w, 1.0)
    np.testing.assert_array_equal(x, [1.0, 1.0, 4.0])
    expected = np.dtype(dtype).newbyteorder("=") if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    assert x.dtype == expected and x.dtype.isnative


def test_strength_too_large_for_a_float():
    with pytest.raises(ValueError, match="lam must be finite"):
        wsprox.prox(np.ones(3), 10**400)


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">f2", ">i4"])
def test_non_native_byte_order_accepted_everywhere(dtype):
    w = np.array([0.0, 1.0, 5.0, 2.0]).astype(dtype)
    native = w.astype(np.dtype(dtype).newbyteorder("="))
    assert wsprox.penalty(w) == wsprox.penalty(native)
    x = wsprox.prox(w, 1.0)
    np.testing.assert_array_equal(x, wsprox.prox(native, 1.0))
    assert wsprox.certify(w, x.astype(dtype) if w.dtype.kind == "f" else x, 1.0).ok


def test_cuda_unavailable_without_numba_cuda(monkeypatch):
    """numba's built-in numba.cuda is not enough (its simulator fails inside the backend): the backend
    must report numba-cuda missing, also with NUMBA_ENABLE_CUDASIM=1."""
    import importlib.util

    from wsprox.solvers import cuda_backend

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a)
    )
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    ok, reason = cuda_backend.availability()
    assert not ok and "numba-cuda" in reason
