"""The ``cuda`` backend: host driver of :mod:`wsprox.solvers.cuda_kernels`.

The algorithm (tile PAVA, a bridge tree of common lower tangents across tiles, expansion)
is described in :mod:`wsprox.solvers.cuda_prototype`; the launch sequence here depends
only on the shape: one tile launch, one scan, ``ceil(log2 n_tiles)`` bridge/update launch
pairs, (two more launches for cluster ids) and one expansion launch per row chunk.

Tunables (module constants read at every call, so tests can patch them):

``TILE``
    Elements per tile (the shared-memory stage of the tile PAVA holds ``20 * TILE``
    bytes, so at most 2048 on current GPUs).
``THREADS_PER_BLOCK``
    Threads per block of every launch.
``SORT_PROVIDER``
    None (default: CuPy, then torch, found at run time) or a provider object; the
    test-only :class:`HostSortProvider` sorts on the host and exists for numba's CUDA
    simulator only.

Device sort: numba has no device-wide sort, so the segmented row sort comes from CuPy
(``cupy.sort``/``cupy.argsort``, CUB) or torch (``torch.sort``), which also do the
reshaping of device inputs (``axis``) and dtype conversions. Device inputs (anything with
``__cuda_array_interface__``) are used zero-copy and the result has the input's kind;
kernels run on the caller's stream (torch's or CuPy's current stream).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .._validation import check_strength, nonfinite_message, normalize_axis, resolve_dtypes

__all__ = ["solve", "prox_device", "availability", "HostSortProvider", "TILE", "THREADS_PER_BLOCK"]

#: Elements per tile.
TILE = 1024
#: Threads per block of every launch.
THREADS_PER_BLOCK = 128
#: The sort provider: None (auto: CuPy, then torch) or an object like :class:`HostSortProvider`.
SORT_PROVIDER = None

_MAX_GRID_Y = 65535
_INSTALL = (
    "install CuPy (pip install cupy-cuda12x) or PyTorch with CUDA (pip install torch), or pip install 'wsprox[cuda]'"
)


def simulator_enabled() -> bool:
    """True when numba's CUDA simulator is requested (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def availability() -> tuple[bool, str | None]:
    """``(ok, reason)``: numba-cuda importable, a GPU (or the simulator), a device sort provider."""
    if importlib.util.find_spec("numba") is None or importlib.util.find_spec("numba.cuda") is None:
        return False, "numba-cuda is not installed: pip install 'wsprox[cuda]' (or pip install numba-cuda)"
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - broken installs
        return False, f"numba.cuda cannot be imported ({exc}): pip install 'wsprox[cuda]'"
    if not simulator_enabled() and not cuda.is_available():
        return False, "no CUDA GPU found (numba.cuda.is_available() is False); set NUMBA_ENABLE_CUDASIM=1 to simulate"
    if SORT_PROVIDER is None and _find_provider_name() is None and not simulator_enabled():
        return False, f"no device sort provider: {_INSTALL}"
    return True, None


def is_simulated_device_array(obj) -> bool:
    """True for the device arrays of numba's CUDA simulator (they have no ``__cuda_array_interface__``)."""
    return type(obj).__module__.startswith("numba.cuda.simulator")


def _shape_dtype(obj):
    """Shape and dtype of a device array (CUDA array interface, or a simulated numba array)."""
    if is_simulated_device_array(obj):
        return tuple(obj.shape), np.dtype(obj.dtype)
    cai = obj.__cuda_array_interface__
    return tuple(cai["shape"]), np.dtype(cai["typestr"])


def _find_provider_name():
    for name in ("cupy", "torch"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def get_provider(like=None):
    """The sort provider for an input ``like`` (torch input -> torch, CuPy input -> CuPy)."""
    if SORT_PROVIDER is not None:
        return SORT_PROVIDER
    mod = type(like).__module__.split(".")[0] if like is not None else ""
    if mod == "torch":
        return _TorchProvider()
    if mod == "cupy":
        return _CupyProvider()
    name = _find_provider_name()
    if name == "cupy":
        return _CupyProvider()
    if name == "torch":
        return _TorchProvider()
    if simulator_enabled():
        return HostSortProvider()
    raise ImportError(f"the 'cuda' backend needs a device sort: {_INSTALL}")


# ------------------------------------------------------------------------- providers
class HostSortProvider:
    """TEST-ONLY provider for numba's CUDA simulator: sorts and reshapes through host numpy.

    It copies device arrays to the host and back, so it defeats the purpose of the
    backend on a real GPU; it exists so that the kernels can be tested without one.
    """

    name = "host (test only)"

    def stream(self):
        from numba import cuda

        return cuda.default_stream()

    def to_rows(self, obj, axis, compute_dtype):
        from numba import cuda

        if isinstance(obj, np.ndarray):
            host = obj
        elif is_simulated_device_array(obj):
            host = obj.copy_to_host()
        else:
            host = cuda.as_cuda_array(obj).copy_to_host()
        moved = host.reshape(1, host.size) if axis is None else np.moveaxis(host, axis, -1)
        rows = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]), dtype=compute_dtype)
        return cuda.to_device(rows), moved.shape

    def sort_rows(self, rows_dev, stream):
        from numba import cuda

        host = rows_dev.copy_to_host()
        perm = np.argsort(host, axis=1, kind="stable")
        xs = np.take_along_axis(host, perm, axis=1)
        return cuda.to_device(np.ascontiguousarray(xs)), cuda.to_device(perm.astype(np.int64))

    def from_rows(self, x_dev, moved_shape, axis, shape, out_dtype, like):
        from numba import cuda

        x = x_dev.copy_to_host().reshape(moved_shape)
        x = x.reshape(shape) if axis is None else np.moveaxis(x, -1, axis)
        return cuda.to_device(np.ascontiguousarray(x, dtype=out_dtype))

    def copy_into(self, out, result):
        from numba import cuda

        if is_simulated_device_array(out):
            out.copy_to_device(result)
        else:
            cuda.as_cuda_array(out).copy_to_device(cuda.as_cuda_array(result))


class _TorchProvider:
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def stream(self):
        from numba import cuda

        return cuda.external_stream(self.torch.cuda.current_stream().cuda_stream)

    def _tensor(self, obj):
        torch = self.torch
        if isinstance(obj, torch.Tensor):
            return obj.detach()
        return torch.as_tensor(obj, device="cuda")

    def to_rows(self, obj, axis, compute_dtype):
        from numba import cuda

        torch = self.torch
        t = self._tensor(obj) if not isinstance(obj, np.ndarray) else torch.from_numpy(obj).cuda()
        moved = t.reshape(1, t.numel()) if axis is None else t.movedim(axis, -1)
        rows = moved.reshape(-1, moved.shape[-1]).to(getattr(torch, np.dtype(compute_dtype).name)).contiguous()
        return cuda.as_cuda_array(rows), tuple(moved.shape)

    def sort_rows(self, rows_dev, stream):
        from numba import cuda

        values, indices = self.torch.sort(self.torch.as_tensor(rows_dev, device="cuda"), dim=-1)
        return cuda.as_cuda_array(values), cuda.as_cuda_array(indices)

    def from_rows(self, x_dev, moved_shape, axis, shape, out_dtype, like):
        from numba import cuda

        torch = self.torch
        x = torch.as_tensor(x_dev, device="cuda").reshape(moved_shape)
        x = x.reshape(shape) if axis is None else x.movedim(-1, axis)
        x = x.to(getattr(torch, np.dtype(out_dtype).name)).contiguous()
        mod = type(like).__module__.split(".")[0]
        if mod == "torch":
            return x
        if mod == "cupy":
            import cupy

            return cupy.asarray(x)
        return cuda.as_cuda_array(x)

    def copy_into(self, out, result):
        self._tensor(out).copy_(self._tensor(result))


class _CupyProvider:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cupy = cupy

    def stream(self):
        from numba import cuda

        return cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)

    def to_rows(self, obj, axis, compute_dtype):
        from numba import cuda

        cp = self.cupy
        a = cp.asarray(obj)
        moved = a.reshape(1, a.size) if axis is None else cp.moveaxis(a, axis, -1)
        rows = cp.ascontiguousarray(moved.reshape(-1, moved.shape[-1]).astype(compute_dtype, copy=False))
        return cuda.as_cuda_array(rows), tuple(moved.shape)

    def sort_rows(self, rows_dev, stream):
        from numba import cuda

        cp = self.cupy
        rows = cp.asarray(rows_dev)
        perm = cp.argsort(rows, axis=-1).astype(cp.int64, copy=False)
        return cuda.as_cuda_array(cp.take_along_axis(rows, perm, axis=-1)), cuda.as_cuda_array(perm)

    def from_rows(self, x_dev, moved_shape, axis, shape, out_dtype, like):
        from numba import cuda

        cp = self.cupy
        x = cp.asarray(x_dev).reshape(moved_shape)
        x = x.reshape(shape) if axis is None else cp.moveaxis(x, -1, axis)
        x = cp.ascontiguousarray(x.astype(out_dtype, copy=False))
        mod = type(like).__module__.split(".")[0]
        if mod == "cupy":
            return x
        if mod == "torch":
            import torch

            return torch.as_tensor(x, device="cuda")
        return cuda.as_cuda_array(x)

    def copy_into(self, out, result):
        self.cupy.asarray(out)[...] = self.cupy.asarray(result)


# ------------------------------------------------------------------------- core
def _grid(n, tpb):
    return max(1, -(-n // tpb))


def run_rows(xs, perm, lam, l1, want_labels, stream, *, tile=None, threads_per_block=None):
    """The prox of sorted rows: ``xs`` (n, d) sorted ascending, ``perm`` its int64 sort permutation.

    Returns numba device arrays ``out`` ((n, d), ``xs``'s dtype, original order) and
    ``labels`` (int64, or None).
    """
    from numba import cuda

    from .cuda_kernels import get_kernels, n_levels

    tile = int(TILE if tile is None else tile)
    tpb = int(THREADS_PER_BLOCK if threads_per_block is None else threads_per_block)
    if tile < 1 or tpb < 1:
        raise ValueError(f"TILE and THREADS_PER_BLOCK must be >= 1, got {tile}, {tpb}")
    kern = get_kernels(tile, tpb)
    n, d = xs.shape
    nt = -(-d // tile)
    slots = nt * kern.SLOTS
    is32 = xs.dtype == np.float32
    pos_dtype = np.int32 if d < 2**31 - 1 else np.int64
    out = cuda.device_array((n, d), dtype=xs.dtype, stream=stream)
    labels = cuda.device_array((n, d) if want_labels else (1, 1), dtype=np.int64, stream=stream)
    levels = n_levels(nt)
    npairs = max(1, -(-nt // 2))
    for r0 in range(0, n, _MAX_GRID_Y):
        r1 = min(n, r0 + _MAX_GRID_Y)
        m = r1 - r0
        xs_c, perm_c, out_c = xs[r0:r1], perm[r0:r1], out[r0:r1]
        vcnt = cuda.device_array((m, nt), np.int64, stream=stream)
        vpos = cuda.device_array((m, slots), pos_dtype, stream=stream)
        vcum = cuda.device_array((m, slots), np.float64, stream=stream)
        tot = cuda.device_array((m, nt), np.float64, stream=stream)
        off = cuda.device_array((m, nt), np.float64, stream=stream)
        L = cuda.device_array((m, nt), np.int64, stream=stream)
        R = cuda.device_array((m, nt), np.int64, stream=stream)
        bp = cuda.device_array((m, npairs), np.int64, stream=stream)
        bq = cuda.device_array((m, npairs), np.int64, stream=stream)
        kern.k_tile[(nt, m), tpb, stream](xs_c, lam, vcnt, vpos, vcum, tot, L, R)
        kern.k_scan[m, tpb, stream](tot, off)
        for level in range(levels):
            pairs = -(-nt // (2 << level))
            kern.k_bridge[(_grid(pairs, tpb), m), tpb, stream](level, lam, d, vcnt, vpos, vcum, off, L, R, bp, bq)
            kern.k_update[(_grid(nt, tpb), m), tpb, stream](level, vpos, bp, bq, L, R)
        if want_labels:
            vlab = cuda.device_array((m, slots), np.int64, stream=stream)
            lcnt = cuda.device_array((m, nt), np.float64, stream=stream)
            lbase = cuda.device_array((m, nt), np.float64, stream=stream)
            kern.k_label_flags[(nt, m), 1, stream](xs_c, lam, l1, is32, vcnt, vpos, vcum, off, L, R, vlab, lcnt)
            kern.k_scan[m, tpb, stream](lcnt, lbase)
            lab_c = labels[r0:r1]
        else:
            vlab = lbase = lab_c = cuda.device_array((1, 1), np.int64, stream=stream)
        kern.k_expand[(_grid(d, tpb), m), tpb, stream](
            xs_c, perm_c, lam, l1, is32, vcnt, vpos, vcum, off, L, R, out_c, bool(want_labels), vlab, lbase, lab_c
        )
    return out, (labels if want_labels else None)


def _check_finite_device(rows_dev, moved_shape, axis, shape, stream):
    """Raise the API's ValueError for non-finite entries, counted on the device."""
    from numba import cuda

    from .cuda_kernels import k_nonfinite

    if rows_dev.dtype.kind != "f" or rows_dev.size == 0:
        return
    count = cuda.to_device(np.zeros(1, np.int64), stream=stream)
    first = cuda.to_device(np.array([np.iinfo(np.int64).max], np.int64), stream=stream)
    tpb = int(THREADS_PER_BLOCK)
    k_nonfinite[_grid(rows_dev.size, tpb), tpb, stream](rows_dev, count, first)
    c = int(count.copy_to_host(stream=stream)[0])
    if c == 0:
        return
    f = int(first.copy_to_host(stream=stream)[0])
    idx = np.unravel_index(f, moved_shape)
    if axis is not None:
        idx = list(idx)
        idx.insert(axis, idx.pop())
    raise ValueError(nonfinite_message("w", c, idx))


def solve(w, lam, l1, return_clusters):
    """Registry entry: solve every row of the 2-D ``w`` (numpy, or a numba device array)."""
    from numba import cuda

    provider = get_provider()
    stream = provider.stream()
    host = isinstance(w, np.ndarray)
    rows = cuda.to_device(np.ascontiguousarray(w), stream=stream) if host else w
    xs, perm = provider.sort_rows(rows, stream)
    out, labels = run_rows(xs, perm, float(lam), float(l1), bool(return_clusters), stream)
    if host:
        x = out.copy_to_host(stream=stream)
        lab = labels.copy_to_host(stream=stream) if labels is not None else None
        stream.synchronize()
        return x, lab
    return out, labels


def prox_device(w, lam, *, l1=0.0, axis=None, backend="auto", out=None, return_clusters=False):
    """:func:`wsprox.prox` for device arrays (objects with ``__cuda_array_interface__``).

    Same semantics as the numpy API: dtype rules, finite check (on the device), ``axis``,
    ``out`` (a device array of the result's shape and dtype), ``return_clusters``. The
    result has the input's kind (torch tensor, CuPy array or numba device array).
    """
    from .._registry import get_backend

    lam = check_strength(lam, "lam")
    l1 = check_strength(l1, "l1")
    solver = get_backend("cuda" if backend == "auto" else backend)
    if "cuda" not in solver.array_kinds:
        raise ValueError(f"backend {solver.name!r} does not accept device arrays (it takes {solver.array_kinds})")
    shape, in_dtype = _shape_dtype(w)
    if in_dtype.kind == "c" or in_dtype.kind not in "fbiu":
        raise TypeError(f"w has unsupported dtype {in_dtype}; expected a real floating, integer or bool dtype")
    compute_dtype, out_dtype = resolve_dtypes(in_dtype)
    ax = normalize_axis(axis, len(shape))
    if out is not None:
        if not (hasattr(out, "__cuda_array_interface__") or is_simulated_device_array(out)):
            raise TypeError(f"out must be a device array like w, got {type(out).__name__}")
        out_shape, out_dt = _shape_dtype(out)
        if out_shape != shape:
            raise ValueError(f"out has shape {out_shape}, expected {shape}")
        if out_dt != out_dtype:
            raise TypeError(f"out has dtype {out_dt}, expected {out_dtype}")
    if compute_dtype.name not in solver.dtypes:
        compute_dtype = np.dtype(solver.dtypes[-1])
    provider = get_provider(w)
    stream = provider.stream()
    rows, moved_shape = provider.to_rows(w, ax, compute_dtype)
    n, d = rows.shape
    if solver.max_size is not None and d > solver.max_size:
        raise ValueError(f"w: problem size d={d} is too large for backend {solver.name!r} (at most {solver.max_size})")
    _check_finite_device(rows, moved_shape, ax, shape, stream)
    if n == 0 or d == 0:
        from numba import cuda

        x_rows = rows
        lab_rows = cuda.device_array((n, d), np.int64) if return_clusters else None
    else:
        x_rows, lab_rows = solver.solve(rows, lam, l1, bool(return_clusters))
    result = provider.from_rows(x_rows, moved_shape, ax, shape, out_dtype, w)
    if out is not None:
        provider.copy_into(out, result)
        result = out
    if return_clusters:
        return result, provider.from_rows(lab_rows, moved_shape, ax, shape, np.int64, w)
    return result
