"""The CUDA kernels compiled for a real GPU target (sm_90, the H100/H200), without a GPU.

numba's CUDA simulator runs kernels as Python, so it does not type them as the CUDA
target does (shared-array shapes must be compile-time constants, integer widths unify,
device functions are specialised per array type). This module compiles every kernel of
the ``cuda`` and ``cuda-imminent`` backends with the argument types their hosts pass,
links it to a cubin with nvJitLink, and checks the resources ptxas reports: no spills,
no local memory, shared memory within the static 48 KiB.

Runs in the tox env ``cudaptx`` (numba-cuda with the CUDA 13 compiler wheels, no GPU
needed; it sets WSPROX_REQUIRE_PTX=1 so that a missing compiler fails instead of skipping).
"""

from __future__ import annotations

import os
import re
import types as pytypes

import pytest

REQUIRED = os.environ.get("WSPROX_REQUIRE_PTX") == "1"
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
CC = (9, 0)


def _compiler():
    """numba.cuda with libNVVM and nvJitLink, patched to compile for ``CC`` without a device."""
    if SIM:
        pytest.skip("the simulator replaces the CUDA compiler (run tox -e cudaptx)")
    try:
        from cuda.core import Linker, LinkerOptions, ObjectCode
        from numba import cuda
        from numba.cuda import dispatcher

        cuda.compile_ptx(lambda a: None, "void(float64[::1])", cc=CC)
    except Exception as exc:  # no numba-cuda, no NVVM wheels
        if REQUIRED:
            raise
        pytest.skip(f"numba-cuda with the CUDA compiler wheels is not installed ({exc})")
    # Device functions ask the current device for its compute capability; there is none here.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC)
    return cuda, Linker, LinkerOptions, ObjectCode


@pytest.fixture(scope="module")
def compiler():
    return _compiler()


def _resources(compiler, kernel, sig):
    cuda, Linker, LinkerOptions, ObjectCode = compiler
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
    arch = f"sm_{CC[0]}{CC[1]}"
    linker = Linker(ObjectCode.from_ptx(ptx.encode()), options=LinkerOptions(arch=arch, verbose=True))
    linker.link("cubin")
    log = linker.get_info_log()
    found = {}
    for key, pattern in {
        "registers": r"[Uu]sed (\d+) registers",
        "spill_stores": r"(\d+) bytes spill stores",
        "spill_loads": r"(\d+) bytes spill loads",
        "smem": r"(\d+) bytes smem",
        "lmem": r"(\d+) bytes lmem",
    }.items():
        m = re.search(pattern, log)
        assert m, f"no {key} in the ptxas log:\n{log}"
        found[key] = int(m.group(1))
    return found


def _check(compiler, kernel, sig, max_smem=48 * 1024):
    res = _resources(compiler, kernel, sig)
    assert res["spill_stores"] == 0 and res["spill_loads"] == 0 and res["lmem"] == 0, res
    assert res["smem"] <= max_smem, res
    return res


def _block_registers(per_thread: int, threads: int) -> int:
    """Registers a block of ``threads`` takes on sm_90: allocated per warp, in units of 256."""
    per_warp = -(-per_thread * 32 // 256) * 256
    return per_warp * -(-threads // 32)


def test_block_registers_rounds_per_warp():
    assert _block_registers(92, 672) == 21 * 3072 <= 65536  # 96 per thread, 21 warps: fits
    assert _block_registers(92, 704) > 65536  # 92 * 704 <= 65536, but 22 warps of 3072 do not fit
    assert _block_registers(64, 1024) == 65536


def _signatures(types, dtype, pos):
    """Argument types of the ``cuda`` backend's launches (see ``cuda_backend.run_rows``)."""
    x = types.Array(dtype, 2, "C")
    f64, i64, p = (types.Array(t, 2, "C") for t in (types.float64, types.int64, pos))
    ti, tf = types.Array(types.int64, 3, "C"), types.Array(types.float64, 3, "C")
    flt, b, i = types.float64, types.boolean, types.int64
    return {
        "k_tile": (x, flt, ti, tf, p, f64),
        "k_scan": (f64, f64),
        "k_scan_offsets": (i, tf),
        "k_scan_fields": (tf, i, i),
        "k_bridge": (i, flt, i, ti, p, f64, tf),
        "k_update": (i, p, ti),
        "k_levels": (b, i, i, flt, i, ti, p, f64, tf),
        "k_label_flags": (x, i, flt, flt, b, ti, p, f64, tf, i64),
        "k_expand": (x, i64, flt, flt, b, ti, p, f64, tf, x, b),
        "k_expand_labels": (i64, ti, p, tf, i64, i64),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_backend_kernels_compile(compiler, dtype):
    from numba.cuda import types

    from wsprox.solvers import cuda_backend
    from wsprox.solvers.cuda_kernels import get_kernels, k_nonfinite, tile_shared_bytes

    tile, chunk = cuda_backend.TILE, cuda_backend.CHUNK
    kern = get_kernels(tile, chunk, cuda_backend.THREADS_PER_BLOCK, cuda_backend.LOCAL)
    for name, sig in _signatures(types, getattr(types, dtype), types.int32).items():
        res = _check(compiler, getattr(kern, name), sig)
        threads = {
            "k_tile": kern.NC,
            "k_levels": cuda_backend.FUSED_LEVEL_THREADS,
            "k_scan_fields": cuda_backend.SCAN_THREADS,
            "k_scan_offsets": cuda_backend.SCAN_THREADS,
        }.get(name, kern.TPB)
        assert _block_registers(res["registers"], threads) <= 65536, (name, res)  # else the launch fails
        if name == "k_tile":
            # the host's shared-memory figure (checked before launch) is what ptxas allocates
            assert abs(res["smem"] - tile_shared_bytes(tile, chunk)) <= 64, res
    _check(compiler, k_nonfinite, (types.Array(getattr(types, dtype), 2, "A"), types.int64[::1]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unpooled_kernels_compile(compiler, dtype):
    """The kernels of ``lam = 0`` and ``d = 1`` on device input (soft threshold, labels of distinct values)."""
    from numba.cuda import types

    from wsprox.solvers.cuda_kernels import k_run_starts, k_scatter_run_labels, k_soft_threshold

    values, f64, i64 = types.Array(getattr(types, dtype), 2, "A"), types.float64[:, ::1], types.int64[:, ::1]
    _check(compiler, k_soft_threshold, (values, types.float64, types.Array(getattr(types, dtype), 2, "C")))
    _check(compiler, k_run_starts, (values, f64))
    _check(compiler, k_scatter_run_labels, (types.Array(types.int64, 2, "A"), f64, f64, i64))


def test_cuda_backend_kernels_compile_for_long_rows(compiler):
    """Rows of 2**31 elements or more store positions as int64."""
    from numba.cuda import types

    from wsprox.solvers import cuda_backend
    from wsprox.solvers.cuda_kernels import get_kernels

    kern = get_kernels(cuda_backend.TILE, cuda_backend.CHUNK, cuda_backend.THREADS_PER_BLOCK, cuda_backend.LOCAL)
    for name, sig in _signatures(types, types.float32, types.int64).items():
        _check(compiler, getattr(kern, name), sig)


@pytest.mark.parametrize("tile, chunk", [(2048, 32), (512, 4), (1000, 7), (1024, 1024)])
def test_other_tile_shapes_compile(compiler, tile, chunk):
    from numba.cuda import types

    from wsprox.solvers.cuda_kernels import get_kernels, tile_shared_bytes

    kern = get_kernels(tile, chunk, 128, 16)
    sig = _signatures(types, types.float32, types.int32)["k_tile"]
    res = _check(compiler, kern.k_tile, sig)
    assert abs(res["smem"] - tile_shared_bytes(tile, chunk)) <= 64, res


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dst", ["int32", "int64"])
def test_unsort_kernels_compile(compiler, dtype, dst):
    from numba.cuda import types

    from wsprox.solvers import cuda_backend
    from wsprox.solvers.cuda_kernels import get_unsort_kernels

    kern = get_unsort_kernels(cuda_backend.THREADS_PER_BLOCK, cuda_backend._MAX_BUCKETS)
    x = types.Array(getattr(types, dtype), 2, "C")
    i64, di = types.int64[:, ::1], types.Array(getattr(types, dst), 2, "C")
    i = types.int64
    b = types.boolean
    f64 = types.float64[:, ::1]
    assert _check(compiler, kern.k_bucket_pass, (x, i64, i, i, f64, x, di, b))["smem"] <= 16 * 1024
    _check(compiler, kern.k_window_scatter, (x, di, x))


def test_imminent_kernels_compile(compiler):
    from numba.cuda import types

    from wsprox.solvers import cuda_imminent

    kern = cuda_imminent._kernels(cuda_imminent.THREADS_PER_BLOCK)
    x = types.float32[:, ::1]
    f64, i64 = types.float64[:, ::1], types.int64[:, ::1]
    v64, f64v = types.int64[::1], types.float64[::1]
    flt, b, i = types.float64, types.boolean, types.int64
    sigs = {
        "k_init": (x, flt, i64, f64, v64, f64v),
        "k_mark": (flt, i, i64, f64, v64, f64, v64, f64v),
        "k_scan": (f64, f64),
        "k_compact": (i64, f64, v64, f64, f64, i64, f64, v64),
        "k_values": (x, i64, flt, flt, b, i64, f64, v64, f64v, x, b, f64, f64),
        "k_flags": (f64, v64, f64),
        "k_labels": (i64, i64, v64, f64, f64, i64),
    }
    for name, sig in sigs.items():
        _check(compiler, getattr(kern, name), sig)
