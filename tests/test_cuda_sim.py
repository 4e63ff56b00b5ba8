"""The ``cuda`` and ``cuda-imminent`` kernels in numba's CUDA simulator (and on a real GPU, marked ``gpu``).

Simulator tests run only with ``NUMBA_ENABLE_CUDASIM=1`` in the environment (the ``cudasim``
tox env); tiles and thread blocks are made tiny so that small inputs cross many tile, warp
and block boundaries, and the sort runs on the host through the test-only provider.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction

import numpy as np
import pytest
from reference import family, prox_exact
from test_cuda_prototype import (
    EXACT,
    FAMILIES,
    labels_of_runs,
    labels_of_values,
    make_family,
    pava_reference,
    tile_tolerance,
)

import wsprox
from wsprox import certify

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
sim_only = pytest.mark.skipif(not SIM, reason="CUDA simulator tests need NUMBA_ENABLE_CUDASIM=1 (tox -e cudasim)")


def _real_gpu():
    if SIM:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


gpu_only = pytest.mark.skipif(not _real_gpu(), reason="no CUDA GPU")


@pytest.fixture
def tiny(monkeypatch):
    """Tiny tiles and blocks; the test-only host sort provider."""
    from wsprox.solvers import cuda_backend, cuda_imminent

    monkeypatch.setattr(cuda_backend, "TILE", 4)
    monkeypatch.setattr(cuda_backend, "CHUNK", 2)
    # levels with at most 2 pairs fused into one launch of 3 threads per row (strided loops)
    monkeypatch.setattr(cuda_backend, "FUSED_LEVEL_PAIRS", 2)
    monkeypatch.setattr(cuda_backend, "FUSED_LEVEL_THREADS", 3)
    monkeypatch.setattr(cuda_backend, "SCAN_THREADS", 3)  # scans of per-tile values: runs of several tiles
    # the partitioned unsort everywhere, with windows of 4 destinations and chunks of 8 positions
    monkeypatch.setattr(cuda_backend, "UNSORT", "partitioned")
    monkeypatch.setattr(cuda_backend, "UNSORT_WINDOW", 4)
    monkeypatch.setattr(cuda_backend, "UNSORT_CHUNK", 8)
    monkeypatch.setattr(cuda_backend, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_backend, "LOCAL", 2)  # blocks of 1-2 summed directly, longer ones from the tile sums
    monkeypatch.setattr(cuda_backend, "SORT_PROVIDER", cuda_backend.HostSortProvider())
    monkeypatch.setattr(cuda_imminent, "THREADS_PER_BLOCK", 4)
    return cuda_backend


def _lam_for(name, d):
    return 0.5 * max(d - 1, 1) if name in EXACT else 0.3


def _agree(w, lam, l1=0.0, tile=4, chunk=2, backend="cuda", exact=False, monotone=True):
    """``backend`` against numba, the reference and (cuda) the prototype; ``monotone``: see ``_check`` there."""
    from wsprox.solvers import cuda_backend
    from wsprox.solvers.cuda_prototype import prox_rows

    x, labels = wsprox.prox(w, lam, l1=l1, backend=backend, return_clusters=True)
    assert isinstance(x, np.ndarray) and x.dtype == w.dtype and x.shape == w.shape
    xn, ln = wsprox.prox(w, lam, l1=l1, backend="numba", return_clusters=True)
    scale = float(np.abs(w).max(initial=0.0)) + lam + l1 + 1.0
    tol = (4e-6 if w.dtype == np.float32 else 1e-12) * scale
    np.testing.assert_allclose(x, xn, rtol=0, atol=tol)
    np.testing.assert_allclose(x.astype(np.float64), pava_reference(w.astype(np.float64), lam, l1), atol=tol)
    np.testing.assert_array_equal(labels, labels_of_runs(w, x))
    if monotone:
        np.testing.assert_array_equal(labels, labels_of_values(x))
    if monotone and l1 == 0.0:
        assert certify(w, x, lam), certify(w, x, lam)
    if backend == "cuda":
        _within_documented_bound(w, x, labels, lam, l1, tile)
        px, pl = prox_rows(
            w.reshape(1, -1), lam, l1, tile=tile, chunk=chunk, local=cuda_backend.LOCAL, return_clusters=True
        )
        np.testing.assert_allclose(x, px[0], rtol=0, atol=tol)
        if exact:
            np.testing.assert_array_equal(x, px[0])
            np.testing.assert_array_equal(labels, pl[0])
    if exact:
        np.testing.assert_array_equal(labels, ln)
    return x, labels


def _within_documented_bound(w, x, labels, lam, l1, tile):
    """``x`` against the exact rational prox, within the accuracy ``prox``'s Notes promise for ``cuda``.

    That is ``tile_tolerance`` (two ulps plus the float64 term) for float64; for float32
    one float32 ulp of the exact value plus the float64 term. The float64 term is taken
    over the exact clusters before the L1 threshold (which moves every value by exactly
    ``l1``) and over ``labels``, the clusters cuda returned.
    """
    w64 = w.astype(np.float64)
    exact, _ = prox_exact(w64, lam, l1)
    pooled, pooled_labels = prox_exact(w64, lam)
    pooled_x = np.array([float(v) for v in pooled])
    term = tile_tolerance(w64, pooled_x, pooled_labels, lam, tile, np.float64, labels_out=labels)
    nearest = np.array([float(v) for v in exact])
    tol = term + (np.spacing(np.abs(nearest).astype(np.float32)).astype(np.float64) if w.dtype == np.float32 else 0)
    err = np.array([float(abs(Fraction(float(a)) - e)) for a, e in zip(x.ravel(), exact)])
    assert (err <= tol).all(), (err / tol).max()


@sim_only
def test_registered_and_available(tiny):
    info = wsprox.backends()
    assert info["cuda"].available, info["cuda"].reason
    assert "cuda" in info["cuda"].array_kinds and "cuda" in info["cuda-imminent"].array_kinds


@sim_only
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("d", [1, 2, 31, 32, 33])
def test_families(tiny, name, d):
    rng = np.random.default_rng(d)
    lam = _lam_for(name, d)
    w = make_family(name, d, lam, rng)
    _agree(w, lam, exact=name in EXACT, monotone=name != "huge_tiny")


@sim_only
@pytest.mark.parametrize("name", ["gaussian", "zeros_ramp", "spike_ramp", "huge_tiny", "float32_overflow"])
def test_float32_families(tiny, name):
    """float32 rows of the hard families of tests/reference.py, float32_overflow among them (values near 3.4e38)."""
    for d in (9, 33):
        w, lam = family(name, d, d, lam=0.3)
        w = w.astype(np.float32)
        _agree(w, lam, l1=0.01 * lam, monotone=name != "huge_tiny")


@sim_only
def test_float64_near_overflow_is_scaled_not_lost(tiny):
    """Rows near the float64 limit are solved in units of a power of two (per row), as on the CPU."""
    top = np.finfo(np.float64).max
    x = wsprox.prox(np.array([1.7e308, -1.7e308]), 1e308, backend="cuda")
    np.testing.assert_allclose(x, [7e307, -7e307], rtol=1e-15)
    rng = np.random.default_rng(4)
    huge = np.where(np.arange(30) % 2 == 0, top, -top) * (1 - 1e-3 * rng.random(30))
    small = rng.standard_normal(30)
    w = np.stack([small, huge, small])
    x, labels = wsprox.prox(w, 1e308, l1=1e306, axis=1, backend="cuda", return_clusters=True)
    s = 2.0**-64  # the prox is positively homogeneous: compare with the scaled problem
    ref, ref_labels = wsprox.prox(huge * s, 1e308 * s, l1=1e306 * s, backend="cuda", return_clusters=True)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x[1], ref / s, rtol=1e-14)
    np.testing.assert_array_equal(labels[1], ref_labels)
    np.testing.assert_allclose(x[1], wsprox.prox(huge, 1e308, l1=1e306, backend="numba"), rtol=0, atol=1e-12 * top)
    alone, alone_labels = wsprox.prox(small, 1e308, l1=1e306, backend="cuda", return_clusters=True)
    for r in (0, 2):  # the huge row scales only itself
        np.testing.assert_array_equal(x[r], alone)
        np.testing.assert_array_equal(labels[r], alone_labels)
    x = wsprox.prox(small, 1e308, backend="cuda")  # a huge strength alone: lam d would overflow unscaled
    np.testing.assert_allclose(x, np.full(30, small.mean()), rtol=0, atol=1e-12)


@sim_only
@pytest.mark.parametrize("tile, chunk", [(3, 1), (4, 4), (5, 2), (7, 3), (9, 2)])
def test_tile_boundaries(tiny, monkeypatch, tile, chunk):
    monkeypatch.setattr(tiny, "TILE", tile)
    monkeypatch.setattr(tiny, "CHUNK", chunk)
    rng = np.random.default_rng(tile)
    for d in (tile - 1, tile + 1, 4 * tile, 4 * tile + 1):
        for name in ("adversarial_ramp", "spike_ramp", "zero_one", "gaussian"):
            lam = _lam_for(name, d)
            _agree(make_family(name, d, lam, rng), lam, tile=tile, chunk=chunk, exact=name in EXACT)


@sim_only
@pytest.mark.parametrize("fused_pairs, threads", [(0, 1), (10**9, 1), (10**9, 4), (1, 2)])
def test_fused_levels(tiny, monkeypatch, fused_pairs, threads):
    """No level fused, every level fused (one thread, four threads), the top level only."""
    monkeypatch.setattr(tiny, "FUSED_LEVEL_PAIRS", fused_pairs)
    monkeypatch.setattr(tiny, "FUSED_LEVEL_THREADS", threads)
    for name in ("gaussian", "adversarial_ramp", "zero_one", "spike_ramp"):
        d = 45
        lam = _lam_for(name, d)
        _agree(make_family(name, d, lam, np.random.default_rng(3)), lam, l1=0.01, exact=name in EXACT)


@sim_only
@pytest.mark.parametrize("name", ["gaussian", "adversarial_ramp", "ties", "integers"])
def test_direct_unsort(tiny, monkeypatch, name):
    monkeypatch.setattr(tiny, "UNSORT", "direct")
    for d in (1, 9, 33):
        lam = _lam_for(name, d)
        _agree(make_family(name, d, lam, np.random.default_rng(d)), lam, l1=0.01, exact=name in EXACT)


@sim_only
@pytest.mark.parametrize("window, chunk", [(1, 1), (2, 3), (8, 5), (64, 64)])
def test_partitioned_unsort_shapes(tiny, monkeypatch, window, chunk):
    """Windows and chunks that do and do not divide the row; batched rows; float32 and labels."""
    monkeypatch.setattr(tiny, "UNSORT_WINDOW", window)
    monkeypatch.setattr(tiny, "UNSORT_CHUNK", chunk)
    rng = np.random.default_rng(window + chunk)
    for d in (1, 7, 40):
        _agree(rng.standard_normal(d).astype(np.float32), 0.3, l1=0.02)
    w = rng.standard_normal((3, 21))
    x, labels = wsprox.prox(w, 0.5, axis=1, backend="cuda", return_clusters=True)
    xn, ln = wsprox.prox(w, 0.5, axis=1, backend="numba", return_clusters=True)
    np.testing.assert_allclose(x, xn, atol=1e-12)
    np.testing.assert_array_equal(labels, ln)


def test_unsort_windows_bounded():
    from wsprox.solvers import cuda_backend

    for d in (1, 2, 1000, 2**20, 2**20 + 1, 10**9, 2**31 + 5):
        for window in (1, 4, 2**20):
            shift = cuda_backend._unsort_shift(d, window)
            assert ((d - 1) >> shift) + 1 <= cuda_backend._MAX_BUCKETS
            assert 2**shift >= window or ((d - 1) >> shift) + 1 == cuda_backend._MAX_BUCKETS
            assert shift == 0 or ((d - 1) >> (shift - 1)) + 1 > cuda_backend._MAX_BUCKETS or 2 ** (shift - 1) < window


@sim_only
def test_solver_uses_the_callers_provider(tiny, monkeypatch):
    """prox_device and the solver it calls use one provider (its stream, pool and sort), not a fresh default."""
    from numba import cuda

    seen = []

    class Spy(tiny.HostSortProvider):
        def to_rows(self, *args):
            seen.append(("to_rows", self))
            return super().to_rows(*args)

        def sort_rows(self, *args):
            seen.append(("sort_rows", self))
            return super().sort_rows(*args)

    monkeypatch.setattr(tiny, "get_provider", lambda like=None: Spy())  # a new instance per call, like torch's
    w = np.random.default_rng(0).standard_normal(13)
    for backend in ("cuda", "cuda-imminent"):
        seen.clear()
        x = wsprox.prox(cuda.to_device(w), 0.3, backend=backend).copy_to_host()
        np.testing.assert_allclose(x, wsprox.prox(w, 0.3, backend="numba"), atol=1e-12)
        assert [name for name, _ in seen] == ["to_rows", "sort_rows"]
        assert seen[0][1] is seen[1][1]


@sim_only
def test_device_scope():
    """The input's device (or numba's) is made current in its library; numba on another device is refused."""
    from wsprox.solvers import cuda_backend

    entered = []

    def library_device(index):
        entered.append(index)
        return contextlib.nullcontext()

    for index in (None, 0):
        with cuda_backend.device_scope(index, library_device):
            pass
    assert entered == [0, 0]
    with pytest.raises(
        ValueError, match=r"CUDA device 1, but numba's current device .* is 0 even with device 1 made current"
    ):
        with cuda_backend.device_scope(1, library_device):
            raise AssertionError("not reached")
    assert entered == [0, 0, 1]  # the input's device is made current first (numba follows the current context)


@sim_only
def test_call_runs_inside_the_providers_device_scope(tiny, monkeypatch):
    """prox_device sorts, solves and converts inside the provider's on_device context, and leaves it on errors."""
    from numba import cuda

    log = []

    class OnDevice(tiny.HostSortProvider):
        @contextlib.contextmanager
        def on_device(self, like):
            log.append("enter")
            try:
                yield
            finally:
                log.append("exit")

        def sort_rows(self, *args):
            log.append("sort_rows")
            return super().sort_rows(*args)

        def from_rows(self, *args):
            log.append("from_rows")
            return super().from_rows(*args)

    monkeypatch.setattr(tiny, "SORT_PROVIDER", OnDevice())
    w = np.random.default_rng(3).standard_normal(11)
    x = wsprox.prox(cuda.to_device(w), 0.2).copy_to_host()
    np.testing.assert_allclose(x, wsprox.prox(w, 0.2, backend="numba"), atol=1e-12)
    assert log == ["enter", "sort_rows", "from_rows", "exit"]
    log.clear()
    bad = w.copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        wsprox.prox(cuda.to_device(bad), 0.2)
    assert log == ["enter", "exit"]


@sim_only
def test_finite_check_allocates_from_the_provider(tiny, monkeypatch):
    """The finite check's status words come from the provider's pool, as the work arrays do."""
    from numba import cuda

    shapes = []

    class Recording(tiny.HostSortProvider):
        def empty(self, shape, dtype):
            shapes.append((shape, np.dtype(dtype)))
            return super().empty(shape, dtype)

    monkeypatch.setattr(tiny, "SORT_PROVIDER", Recording())
    w = np.arange(7.0)
    w[5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        wsprox.prox(cuda.to_device(w), 0.5)
    assert shapes == [(2, np.dtype(np.int64))]


@sim_only
def test_provider_without_work_methods(tiny, monkeypatch):
    """A sort provider with only the sorting methods gets numba's allocator and k_scan (NumbaWork)."""
    host = tiny.HostSortProvider()

    class SortOnly:
        name = "sort only"
        stream, to_rows, sort_rows, from_rows, copy_into = (
            host.stream, host.to_rows, host.sort_rows, host.from_rows, host.copy_into
        )  # fmt: skip

    monkeypatch.setattr(tiny, "SORT_PROVIDER", SortOnly())
    _agree(np.random.default_rng(1).standard_normal(30), 0.2, l1=0.01)


@sim_only
def test_numba_work_scan():
    from numba import cuda

    from wsprox.solvers import cuda_backend

    counts = np.random.default_rng(2).integers(0, 9, (3, 17)).astype(np.float64)
    got = cuda_backend.NumbaWork().exclusive_cumsum(cuda.to_device(counts), cuda.default_stream()).copy_to_host()
    np.testing.assert_array_equal(got, np.cumsum(counts, axis=1) - counts)


@sim_only
def test_bad_unsort_mode(tiny, monkeypatch):
    monkeypatch.setattr(tiny, "UNSORT", "sideways")
    with pytest.raises(ValueError, match="UNSORT"):
        wsprox.prox(np.zeros(3), 1.0, backend="cuda")


@sim_only
def test_tile_tunables_checked(tiny, monkeypatch):
    w = np.zeros(5)
    monkeypatch.setattr(tiny, "CHUNK", 0)
    with pytest.raises(ValueError, match="CHUNK"):
        wsprox.prox(w, 1.0, backend="cuda")
    monkeypatch.setattr(tiny, "CHUNK", 1)
    monkeypatch.setattr(tiny, "TILE", 4096)
    with pytest.raises(ValueError, match="shared memory"):
        wsprox.prox(w, 1.0, backend="cuda")
    monkeypatch.setattr(tiny, "TILE", 4)
    for name in ("FUSED_LEVEL_THREADS", "SCAN_THREADS"):
        for bad in (0, 1025):
            monkeypatch.setattr(tiny, name, bad)
            with pytest.raises(ValueError, match=name):
                wsprox.prox(w, 1.0, backend="cuda")
        monkeypatch.setattr(tiny, name, 3)
    monkeypatch.setattr(tiny, "LOCAL", -1)
    with pytest.raises(ValueError, match="LOCAL must be >= 0"):
        wsprox.prox(w, 1.0, backend="cuda")


@sim_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_and_l1(tiny, dtype):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(29).astype(dtype)
    _agree(w, 0.2, l1=0.3)
    _agree(w, 0.0, l1=0.1)


@sim_only
def test_batched_axis(tiny):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 9, 2))
    x, labels = wsprox.prox(w, 0.5, axis=1, backend="cuda", return_clusters=True)
    xn, ln = wsprox.prox(w, 0.5, axis=1, backend="numba", return_clusters=True)
    np.testing.assert_allclose(x, xn, atol=1e-12)
    np.testing.assert_array_equal(labels, ln)


@sim_only
def test_device_array_inputs(tiny):
    from numba import cuda

    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 10)).astype(np.float32)
    dw = cuda.to_device(w)
    x = wsprox.prox(dw, 0.4, axis=-1, l1=0.05)
    assert not isinstance(x, np.ndarray) and hasattr(x, "copy_to_host")  # a (simulated) numba device array
    xn = wsprox.prox(w, 0.4, axis=-1, l1=0.05, backend="numba")
    np.testing.assert_allclose(x.copy_to_host(), xn, atol=4e-6)
    x, labels = wsprox.prox(dw, 0.4, return_clusters=True)
    xn, ln = wsprox.prox(w, 0.4, backend="numba", return_clusters=True)
    np.testing.assert_allclose(x.copy_to_host(), xn, atol=4e-6)
    np.testing.assert_array_equal(labels.copy_to_host(), labels_of_values(x.copy_to_host().ravel()).reshape(4, 10))
    out = cuda.device_array((4, 10), np.float32)
    res = wsprox.prox(dw, 0.4, axis=0, out=out)
    assert res is out
    np.testing.assert_allclose(out.copy_to_host(), wsprox.prox(w, 0.4, axis=0, backend="numba"), atol=4e-6)
    np.testing.assert_array_equal(dw.copy_to_host(), w)  # input untouched


@sim_only
def test_device_dtype_rules(tiny):
    from numba import cuda

    w16 = np.array([0.0, 1.0, 5.0], np.float16)
    x = wsprox.prox(cuda.to_device(w16), 1.0).copy_to_host()
    assert x.dtype == np.float16
    np.testing.assert_allclose(x, [1.0, 1.0, 4.0])
    xi = wsprox.prox(cuda.to_device(np.array([0, 1, 5], np.int64)), 1.0).copy_to_host()
    assert xi.dtype == np.float64
    np.testing.assert_allclose(xi, [1.0, 1.0, 4.0])


@sim_only
@pytest.mark.parametrize("backend", ["cuda", "cuda-imminent"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_unpooled_is_the_exact_soft_threshold(tiny, backend, dtype):
    """``lam = 0`` or ``d = 1`` on device input: the soft threshold, bit for bit as on the host."""
    from numba import cuda

    rng = np.random.default_rng(7)
    w = (rng.standard_normal((3, 37)) * 10.0 ** rng.integers(-8, 8, (3, 37))).astype(dtype)
    w[0, :5] = w[0, 5]  # ties
    w[1, 3] = -0.0
    column = np.ascontiguousarray(w[:, :1])
    for rows, lam, l1 in ((w, 0.0, 0.0), (w, 0.0, 0.5), (column, 2.0, 0.0), (column, 2.0, 0.5)):
        host_x, host_labels = wsprox.prox(rows, lam, l1=l1, axis=1, backend="numba", return_clusters=True)
        x, labels = wsprox.prox(cuda.to_device(rows), lam, l1=l1, axis=1, backend=backend, return_clusters=True)
        x, labels = x.copy_to_host(), labels.copy_to_host()
        assert x.dtype == dtype
        np.testing.assert_array_equal(x.view(np.uint8), host_x.view(np.uint8))  # signs of zeros too
        np.testing.assert_array_equal(labels, host_labels)
        x_only = wsprox.prox(cuda.to_device(rows), lam, l1=l1, axis=1, backend=backend).copy_to_host()
        np.testing.assert_array_equal(x_only.view(np.uint8), host_x.view(np.uint8))


@sim_only
def test_device_errors(tiny):
    from numba import cuda

    w = np.array([[0.0, 1.0], [np.nan, np.inf]])
    with pytest.raises(ValueError, match=r"2 non-finite values.*index \(1, 0\)"):
        wsprox.prox(cuda.to_device(w), 1.0, axis=1)
    dw = cuda.to_device(np.zeros(3))
    with pytest.raises(ValueError, match="does not accept device arrays"):
        wsprox.prox(dw, 1.0, backend="numba")
    with pytest.raises(ValueError, match="lam"):
        wsprox.prox(dw, -1.0)
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        wsprox.prox(dw, 1.0, axis=2)
    with pytest.raises(ValueError, match="unknown backend"):
        wsprox.prox(dw, 1.0, backend="nope")
    with pytest.raises(TypeError, match="out"):
        wsprox.prox(dw, 1.0, out=cuda.device_array(3, np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        wsprox.prox(dw, 1.0, out=cuda.device_array(4, np.float64))
    for backend in ("cuda", "cuda-imminent"):  # a failed call leaves a device out as it was
        out = cuda.to_device(np.full((2, 2), 7.0))
        with pytest.raises(ValueError, match="non-finite"):
            wsprox.prox(cuda.to_device(w), 1.0, axis=1, out=out, backend=backend)
        np.testing.assert_array_equal(out.copy_to_host(), np.full((2, 2), 7.0))


@sim_only
def test_missing_sort_provider_message(tiny, monkeypatch):
    from wsprox.solvers import cuda_backend

    monkeypatch.setattr(cuda_backend, "SORT_PROVIDER", None)
    monkeypatch.setattr(cuda_backend, "_find_provider_name", lambda: None)
    monkeypatch.setattr(cuda_backend, "simulator_enabled", lambda: False)
    with pytest.raises(ImportError, match="cupy"):
        cuda_backend.get_provider()
    ok, reason = cuda_backend.availability()
    assert not ok and ("GPU" in reason or "cupy" in reason.lower())


@sim_only
@pytest.mark.parametrize(
    "name", ["gaussian", "adversarial_ramp", "zero_one", "huge_lam", "integers", "ties", "float64_overflow"]
)
def test_imminent_baseline(tiny, name):
    from numba import cuda

    from wsprox.solvers import cuda_imminent

    d = 24
    lam = _lam_for(name, d)
    w = make_family(name, d, lam, np.random.default_rng(0))
    _agree(w, lam, l1=0.01, backend="cuda-imminent", exact=name in EXACT)
    _agree(w, lam, backend="cuda-imminent", exact=name in EXACT)  # l1 = 0: certified too
    if name == "adversarial_ramp":
        dev = cuda.to_device(np.ascontiguousarray(np.sort(w)).reshape(1, -1))
        perm = cuda.to_device(np.arange(d, dtype=np.int64).reshape(1, -1))
        _, _, rounds = cuda_imminent.run_rows(dev, perm, lam, 0.0, False, 0, threads_per_block=4)
        assert rounds >= d // 2 - 2  # the slow case it is kept to show
        with pytest.raises(TimeoutError, match="did not converge in 3 rounds"):
            cuda_imminent.run_rows(dev, perm, lam, 0.0, False, 0, max_rounds=3, threads_per_block=4)
        with pytest.raises(TimeoutError, match=r"did not converge before the deadline \(1 rounds run\)"):
            cuda_imminent.run_rows(dev, perm, lam, 0.0, False, 0, deadline=0.0, threads_per_block=4)


@sim_only
@pytest.mark.parametrize("lam", [1e-3, 0.3])
def test_accuracy_does_not_grow_with_d(tiny, lam):
    """225 tiles of 4, offsets scanned by 3 threads in runs: the compensated offsets and the
    per-tile references of the kernels keep the error at the tile's scale (a plain scan of
    sums relative to the median gave errors growing with the row's prefixes)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal(900) ** 3  # heavy tails: large prefixes of x - c
    x = wsprox.prox(w, lam, backend="cuda")
    x_ref, labels_ref = wsprox.prox(w, lam, backend="numba", return_clusters=True)
    tol = tile_tolerance(w, x_ref, labels_ref, lam, tiny.TILE, np.float64)
    err = np.abs(x - x_ref)
    assert np.all(err <= tol), f"max error/tolerance {np.max(err / tol):.3g}"
    from wsprox.solvers.cuda_prototype import prox_rows

    assert np.all(np.abs(x - prox_rows(w.reshape(1, -1), lam, tile=4, chunk=2, local=tiny.LOCAL)[0][0]) <= tol)


@sim_only
@pytest.mark.parametrize("local", [0, 2, 5])
def test_short_blocks_and_equal_weights(tiny, monkeypatch, local):
    """The kernels' direct sums (blocks of at most ``LOCAL`` weights, blocks of equal weights)
    give the prototype's and numba's bits and cluster ids, on rows of singletons at tiny lam,
    near-tied pairs and triples, and groups of equal weights across tiles of 16."""
    from wsprox.solvers.cuda_prototype import prox_rows

    monkeypatch.setattr(tiny, "TILE", 16)
    monkeypatch.setattr(tiny, "CHUNK", 4)
    monkeypatch.setattr(tiny, "LOCAL", local)
    rng = np.random.default_rng(local)
    d = 120
    steps = np.cumsum(rng.exponential(1.0, d))
    near_ties = np.concatenate([np.repeat(steps[: d // 4], 2), np.repeat(steps[d // 4 : d // 4 + d // 6], 3)])
    rows = {
        "singletons": (rng.permutation(steps), 1e-11 * np.ptp(steps)),
        "near_ties": (rng.permutation(near_ties + 1e-12 * rng.standard_normal(d)), 1e-11 * np.ptp(steps)),
        "equal_groups": (rng.permutation(np.repeat(1e3 * rng.standard_normal(d // 20), 20)), 1e-2),
    }
    for name, (w, lam) in rows.items():
        for dtype in (np.float64, np.float32):
            wd = w.astype(dtype)
            x, labels = wsprox.prox(wd, lam, backend="cuda", return_clusters=True)
            px, pl = prox_rows(wd.reshape(1, -1), lam, tile=16, chunk=4, local=local, return_clusters=True)
            assert certify(wd, x, lam), (name, dtype)
            np.testing.assert_array_equal(labels, labels_of_runs(wd, x))
            if name != "near_ties" or local >= 3:  # every block summed directly, as on the CPU
                np.testing.assert_array_equal(x, px[0], err_msg=f"{name} {dtype.__name__}")
                np.testing.assert_array_equal(labels, pl[0], err_msg=f"{name} {dtype.__name__}")
                np.testing.assert_array_equal(x, wsprox.prox(wd, lam, backend="numba"), err_msg=name)
            else:  # pairs and triples from the tile sums (the order of the sums differs from the prototype's)
                np.testing.assert_allclose(x, px[0], rtol=4 * np.finfo(dtype).eps, atol=0, err_msg=name)


# ------------------------------------------------------------------------------ real GPU
@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("d", [10**5, 10**6, 10**7, 10**8])
def test_gpu_agrees_with_numba_float32(d):
    from numba import cuda

    rng = np.random.default_rng(0)
    w = rng.standard_normal(d, dtype=np.float32)
    x = wsprox.prox(cuda.to_device(w), 1e-2).copy_to_host()
    xn = wsprox.prox(w, 1e-2, backend="numba")
    np.testing.assert_allclose(x, xn, rtol=0, atol=4 * np.spacing(np.float32(np.abs(w).max())))
    cert = wsprox.certify(w, x, 1e-2)
    assert cert, f"certificate failed, worst violation {cert.max_violation:.3g}"


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("d", [10**6, 10**7])
def test_gpu_float64_accuracy_does_not_grow_with_d(d):
    from numba import cuda

    from wsprox.solvers import cuda_backend

    rng = np.random.default_rng(2)
    w = rng.standard_normal(d) ** 3
    x = wsprox.prox(cuda.to_device(w), 1e-2).copy_to_host()
    x_ref, labels_ref = wsprox.prox(w, 1e-2, backend="numba", return_clusters=True)
    tol = tile_tolerance(w, x_ref, labels_ref, 1e-2, cuda_backend.TILE, np.float64)
    err = np.abs(x - x_ref)
    assert np.all(err <= tol), f"max error/tolerance {np.max(err / tol):.3g}"


@pytest.mark.gpu
@gpu_only
def test_gpu_adversarial_ramp():
    d = 10**6
    lam = 1.0
    w = make_family("adversarial_ramp", d, lam, np.random.default_rng(0))
    x = wsprox.prox(w, lam, backend="cuda")
    np.testing.assert_allclose(x, wsprox.prox(w, lam, backend="numba"), atol=1e-9)


@pytest.mark.gpu
@gpu_only
@pytest.mark.parametrize("unsort", ["direct", "partitioned"])
@pytest.mark.parametrize("chunk", [8, 1024])
def test_gpu_designs_agree_bitwise(monkeypatch, unsort, chunk):
    """Both unsorts and both tile stages (chunked, sequential) on the real GPU; the unsort moves bits only."""
    from numba import cuda

    from wsprox.solvers import cuda_backend

    rng = np.random.default_rng(1)
    w = rng.standard_normal(3 * 10**6 + 17, dtype=np.float32)
    monkeypatch.setattr(cuda_backend, "CHUNK", chunk)
    monkeypatch.setattr(cuda_backend, "UNSORT", "direct")
    ref, ref_labels = wsprox.prox(cuda.to_device(w), 1e-2, return_clusters=True)
    monkeypatch.setattr(cuda_backend, "UNSORT", unsort)
    x, labels = wsprox.prox(cuda.to_device(w), 1e-2, return_clusters=True)
    np.testing.assert_array_equal(x.copy_to_host(), ref.copy_to_host())
    np.testing.assert_array_equal(labels.copy_to_host(), ref_labels.copy_to_host())
    xn = wsprox.prox(w, 1e-2, backend="numba")
    np.testing.assert_allclose(x.copy_to_host(), xn, rtol=0, atol=4 * np.spacing(np.float32(np.abs(w).max())))


@sim_only
def test_bench_cuda_dry_run(tmp_path, monkeypatch):
    """asv_bench/bench_cuda.py's dry run: every table row and design variant measured, tunables restored."""
    import importlib.util
    import json
    import pathlib

    from wsprox.solvers import cuda_backend, cuda_imminent

    tunables = ("TILE", "CHUNK", "UNSORT", "UNSORT_WINDOW", "UNSORT_CHUNK", "THREADS_PER_BLOCK", "FUSED_LEVEL_THREADS")
    tunables += ("SCAN_THREADS",)
    for mod, names in ((cuda_backend, tunables), (cuda_imminent, ("THREADS_PER_BLOCK",))):
        for name in names:
            monkeypatch.setattr(mod, name, getattr(mod, name))  # the dry run sets them; undone after the test
    monkeypatch.setattr(cuda_backend, "SORT_PROVIDER", cuda_backend.HostSortProvider())
    path = pathlib.Path(__file__).parents[1] / "asv_bench" / "bench_cuda.py"
    spec = importlib.util.spec_from_file_location("bench_cuda", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    unsort = cuda_backend.UNSORT
    assert bench.main(["--dry-run", str(tmp_path / "out.json")]) == 0
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["meta"]["dry_run"] is True
    assert len(data["rows"]) == 7 and all(r["prox_ms"] > 0 for r in data["rows"])
    (variant,) = data["variants"]
    assert set(variant["ms"]) == {f"{u}/{t}" for u in ("direct", "partitioned") for t in ("chunked", "sequential")}
    assert all(t > 0 for t in variant["ms"].values())
    assert cuda_backend.UNSORT == unsort  # the variants put the tunables back
    profile = data["host_profile"]
    assert profile["calls"] == 2 and profile["d"] == 16 and profile["wall_us_per_call_profiled"] > 0
    own = [r["own_us"] for r in profile["top"]]
    assert own == sorted(own, reverse=True) and own[0] > 0
    assert data["meta"]["complete"] is True and data["meta"]["device"] == "simulator"
    assert bench.main([str(tmp_path / "out.json"), "--replot", "--plot", str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"

    # a run cut short keeps what it measured; cuda-imminent is stopped by its deadline
    def broken(*args):
        raise RuntimeError("cut short")

    monkeypatch.setattr(bench, "_batched_row", broken)
    short = tmp_path / "short.json"
    argv = ["--dry-run", str(short), "--imminent-timeout", "0", "--no-variants", "--profile-calls", "0"]
    with pytest.raises(RuntimeError, match="cut short"):
        bench.main(argv)
    data = json.loads(short.read_text())
    assert data["meta"]["complete"] is False and len(data["rows"]) == 6
    ramps = [r for r in data["rows"] if r["case"].startswith("adversarial_ramp")]
    assert [r["imminent_note"] for r in ramps] == ["timeout (> 0 s)"] * 2


@sim_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_imminent_batches_and_dtypes(tiny, dtype, l1):
    """Rows of a batch (axis 0 and 1), float32 and float64, with and without l1: the numba backend's result."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 24)).astype(dtype)
    tol = 4e-6 if dtype == np.float32 else 1e-12
    for axis in (0, 1):
        x, labels = wsprox.prox(w, 0.3, l1=l1, axis=axis, backend="cuda-imminent", return_clusters=True)
        xn, ln = wsprox.prox(w, 0.3, l1=l1, axis=axis, backend="numba", return_clusters=True)
        assert x.dtype == dtype and x.shape == w.shape
        np.testing.assert_allclose(x, xn, rtol=0, atol=tol)
        rows = [x[:, j] for j in range(x.shape[1])] if axis == 0 else list(x)
        lab = [labels[:, j] for j in range(x.shape[1])] if axis == 0 else list(labels)
        for xr, lr in zip(rows, lab):
            np.testing.assert_array_equal(lr, labels_of_values(xr))
        if dtype == np.float64:
            np.testing.assert_array_equal(labels, ln)
        if l1 == 0.0:
            assert certify(w, x, 0.3, axis=axis)


@sim_only
def test_imminent_near_overflow_is_scaled_not_lost(tiny):
    x = wsprox.prox(np.array([1.7e308, -1.7e308]), 1e308, backend="cuda-imminent")
    np.testing.assert_allclose(x, [7e307, -7e307], rtol=1e-15)
    small = np.random.default_rng(1).standard_normal(20)
    w = np.stack([small, np.linspace(-1.0, 1.0, 20) * 1.7e308])
    x = wsprox.prox(w, 1e308, axis=1, backend="cuda-imminent")
    np.testing.assert_allclose(x, wsprox.prox(w, 1e308, axis=1, backend="numba"), rtol=1e-13, atol=1e-12)
