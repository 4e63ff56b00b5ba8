"""The ``cuda`` backend: host driver of :mod:`wsprox.solvers.cuda_kernels`.

The algorithm (tile PAVA, a bridge tree of common lower tangents across tiles, expansion)
is described in :mod:`wsprox.solvers.cuda_prototype`; the launch sequence here depends
only on the shape. Per chunk of rows: one tile launch; then, while a level of the bridge
tree has more than ``FUSED_LEVEL_PAIRS`` merging pairs, one scan launch and a
bridge/update launch pair per level, and one launch for the remaining levels (which also
does the scan when it runs them all); two more launches for cluster ids; one expansion
launch (three more and a scan for the partitioned unsort). A row of up to
``2 * TILE * FUSED_LEVEL_PAIRS`` elements (4.2e6 by default) without cluster ids takes
three launches after the sort (tiles, levels, expansion), a row of one tile two. Every
launch passes few arrays: the per-tile state is packed into two arrays (see
:mod:`.cuda_kernels`), because numba's host cost per launch grows with every array
argument.

Tunables (module constants read at every call, so tests can patch them):

``TILE``
    Elements per tile: one thread block of ``NC = ceil(TILE / CHUNK)`` threads in the tile
    stage, whose shared memory holds ``20 * NC * (CHUNK + 1) + 32 * NC + 1024`` bytes (at
    most 48 KiB; checked before the launch, and against ptxas by
    ``tests/test_cuda_compile.py``).
``CHUNK``
    Elements per thread of the tile stage (``CHUNK >= TILE`` gives one sequential PAVA
    per tile).
``THREADS_PER_BLOCK``
    Threads per block of every launch.
``LOCAL``
    Blocks of at most this many elements (and blocks of equal weights) get their value
    from a direct sum of their sorted weights relative to their middle element, as on the
    CPU, instead of the range sum of the tile sums (whose rounding is relative to the
    tile's spread): each thread of such a block reads the block's weights and those of
    the block before it (the rounding guard), at most ``2 * LOCAL`` loads.
``FUSED_LEVEL_PAIRS``, ``FUSED_LEVEL_THREADS``
    Bridge levels with at most that many merging pairs run in one launch of one block
    per row (that many threads), instead of two launches per level. At most 1024 threads,
    and the block's registers must fit: ``k_levels`` uses 92 per thread on sm_90 (ptxas,
    numba-cuda 0.30 with the CUDA 13 wheels), allocated per warp in units of 256 (96 per
    thread), so at most 672 threads there.
``SCAN_THREADS``
    Threads of the block per row that scans per-tile values (tile totals of rows with
    more than ``2 * FUSED_LEVEL_PAIRS`` tiles, cluster-id counts): at most 1024, fewer
    for short rows: ``min(SCAN_THREADS, max(32, n_tiles))``.
``UNSORT``
    How the values return to the original order: ``"direct"`` (one scatter through the
    sort permutation, fused into the expansion), ``"partitioned"`` (values written in
    sorted order into the output, then grouped by destination window, in the sorted
    input's memory, before the scatter, see
    :func:`wsprox.solvers.cuda_kernels.get_unsort_kernels`), or ``"auto"`` (partitioned for
    rows of at least ``UNSORT_MIN_SIZE`` elements, 2**24: a float32 row of 64 MB, more than
    an H100's 50 MB L2, where a direct scatter stops hitting the cache).
``UNSORT_MIN_SIZE``, ``UNSORT_WINDOW``, ``UNSORT_CHUNK``
    Row length from which ``"auto"`` partitions; destinations per window (at most
    1024 windows per row, widened for longer rows); sorted positions per thread block.
``SORT_PROVIDER``
    None (default: CuPy, then torch, found at run time) or a provider object; the
    test-only :class:`HostSortProvider` sorts on the host and exists for numba's CUDA
    simulator only. A provider's ``sort_rows`` must return fresh arrays (the partitioned
    unsort overwrites the sorted values); providers without ``empty`` and
    ``exclusive_cumsum`` get numba's allocator and scan (:class:`NumbaWork`).

Device sort: numba has no device-wide sort, so the segmented row sort comes from CuPy
(``cupy.sort``/``cupy.argsort``, CUB) or torch (``torch.sort``), which also do the
reshaping of device inputs (``axis``) and dtype conversions. Device inputs (anything with
``__cuda_array_interface__``) are used zero-copy and the result has the input's kind;
kernels run on the caller's stream (torch's or CuPy's current stream). The input's device
is made current in torch or CuPy for the call, so kernels (numba uses the thread's current
CUDA context), work arrays and the stream are all on it; if numba still sees another
device, a ValueError names both (:func:`device_scope`): nothing runs or is copied across
devices.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os

import numpy as np

from .._validation import check_strength, nonfinite_message, normalize_axis, resolve_dtypes

__all__ = [
    "solve",
    "prox_device",
    "availability",
    "HostSortProvider",
    "NumbaWork",
    "TILE",
    "CHUNK",
    "THREADS_PER_BLOCK",
    "LOCAL",
]

#: Elements per tile.
TILE = 1024
#: Elements per thread of the tile stage.
CHUNK = 8
#: Threads per block of every launch.
THREADS_PER_BLOCK = 128
#: Longest block whose value the expansion sums directly from the sorted weights.
LOCAL = 16
#: Bridge levels with at most this many pairs run together in one launch (one block per row).
FUSED_LEVEL_PAIRS = 2048
#: Threads of that block (registers: 92 per thread on sm_90, allocated as 96, at most 65536 per block).
FUSED_LEVEL_THREADS = 512
#: Threads of the one block per row that scans the per-tile values (at most 1024).
SCAN_THREADS = 1024
#: "auto", "direct" or "partitioned" (see the module docstring).
UNSORT = "auto"
#: Row length from which UNSORT="auto" partitions the unsort.
UNSORT_MIN_SIZE = 2**24
#: Destinations per window of the partitioned unsort (a power of two).
UNSORT_WINDOW = 2**20
#: Sorted positions per thread block of the partitioned unsort.
UNSORT_CHUNK = 8192
_MAX_BUCKETS = 1024
#: The sort provider: None (auto: CuPy, then torch) or an object like :class:`HostSortProvider`.
SORT_PROVIDER = None

_MAX_GRID_Y = 65535
#: The provider of the prox_device call in progress (a torch input keeps torch's stream and pool).
_CALL_PROVIDER = contextvars.ContextVar("wsprox_cuda_provider", default=None)
_MAX_STATIC_SHARED = 48 * 1024
_INSTALL = (
    "install CuPy (pip install cupy-cuda12x) or PyTorch with CUDA (pip install torch), or pip install 'wsprox[cuda]'"
)


def simulator_enabled() -> bool:
    """True when numba's CUDA simulator is requested (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def availability() -> tuple[bool, str | None]:
    """``(ok, reason)``: numba-cuda importable, a GPU (or the simulator), a device sort provider."""
    # numba's own numba.cuda (deprecated, no longer maintained) imports without numba-cuda but
    # lacks parts of the API the backend uses, also in the simulator: require numba-cuda itself
    if importlib.util.find_spec("numba") is None or importlib.util.find_spec("numba_cuda") is None:
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


def _wrap(obj):
    """A numba device array over ``obj``'s memory, without the CUDA-array-interface stream sync.

    Every launch goes to the provider's stream, the stream the caller's work is on, so
    the host synchronisation that numba would otherwise do on every import is not needed.
    """
    from numba import cuda

    return cuda.as_cuda_array(obj, sync=False)


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


@contextlib.contextmanager
def device_scope(index, library_device):
    """Context of a call on the input's device ``index`` (None: numba's current device).

    numba launches kernels, wraps arrays and makes streams in the CUDA context current in
    the calling thread (the driver's, which ``torch.cuda.device`` or ``cupy.cuda.Device``
    set; device 0's primary context if none is). So the input's device is made current in
    its library first (``library_device(i)``): kernels, work arrays and the current stream
    are then all on the input's device. If numba still sees another device (another
    context was pushed in this thread), the call is refused with a ValueError naming both
    devices, never run across devices.
    """
    from numba import cuda

    if index is None:
        with library_device(_numba_device_id(cuda)):
            yield
        return
    with library_device(int(index)):
        current = _numba_device_id(cuda)
        if int(index) != current:
            raise ValueError(
                f"w is on CUDA device {index}, but numba's current device in this thread is {current}"
                f" even with device {index} made current: another CUDA context is current here"
                f" (numba runs kernels in the current context; numba.cuda.select_device({index}) or"
                " popping that context fixes it)"
            )
        yield


def _numba_device_id(cuda):
    return getattr(cuda.get_current_device(), "id", 0)  # the simulator's one device has no id: 0


def _device_context(provider, like):
    """``provider.on_device(like)`` (see :func:`device_scope`); a no-op for providers without one."""
    on_device = getattr(provider, "on_device", None)
    return on_device(like) if on_device is not None else contextlib.nullcontext()


# ------------------------------------------------------------------------- providers
class NumbaWork:
    """Work arrays from numba's allocator and the scans by ``k_scan`` (no provider at hand)."""

    def empty(self, shape, dtype):
        from numba import cuda

        return cuda.device_array(shape, dtype)

    def exclusive_cumsum(self, counts, stream):
        """Exclusive cumulative sum along axis 1 of a 2-D float64 device array, on ``stream``.

        The float64 sums of counts are exact up to 2**53.
        """
        from numba import cuda

        from .cuda_kernels import get_scan_kernel

        tpb = int(THREADS_PER_BLOCK)
        out = cuda.device_array(counts.shape, np.float64, stream=stream)
        get_scan_kernel(tpb)[counts.shape[0], tpb, stream](counts, out)
        return out


class HostSortProvider(NumbaWork):
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

    def on_device(self, like):
        """Context of a call: ``like``'s device (numba's if ``like`` is no CUDA tensor) current in torch."""
        torch = self.torch
        index = like.device.index if isinstance(like, torch.Tensor) and like.is_cuda else None
        return device_scope(index, torch.cuda.device)

    def stream(self):
        from numba import cuda

        return cuda.external_stream(self.torch.cuda.current_stream().cuda_stream)

    def empty(self, shape, dtype):
        """Work array from torch's caching allocator (counted by ``torch.cuda.max_memory_allocated``)."""
        torch = self.torch
        return _wrap(torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device="cuda"))

    def exclusive_cumsum(self, counts, stream):
        t = self.torch.as_tensor(counts, device="cuda")  # on torch's current stream: ``stream``
        return _wrap(self.torch.cumsum(t, dim=1) - t)

    def _tensor(self, obj):
        torch = self.torch
        if isinstance(obj, torch.Tensor):
            return obj.detach()
        return torch.as_tensor(obj, device="cuda")

    def to_rows(self, obj, axis, compute_dtype):
        torch = self.torch
        t = self._tensor(obj) if not isinstance(obj, np.ndarray) else torch.from_numpy(obj).cuda()
        moved = t.reshape(1, t.numel()) if axis is None else t.movedim(axis, -1)
        rows = moved.reshape(-1, moved.shape[-1]).to(getattr(torch, np.dtype(compute_dtype).name)).contiguous()
        return _wrap(rows), tuple(moved.shape)

    def sort_rows(self, rows_dev, stream):
        values, indices = self.torch.sort(self.torch.as_tensor(rows_dev, device="cuda"), dim=-1)
        return _wrap(values), _wrap(indices)

    def from_rows(self, x_dev, moved_shape, axis, shape, out_dtype, like):
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
        return _wrap(x)

    def copy_into(self, out, result):
        self._tensor(out).copy_(self._tensor(result))


class _CupyProvider:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cupy = cupy

    def on_device(self, like):
        """Context of a call: ``like``'s device (numba's if ``like`` is no CuPy array) current in CuPy."""
        cp = self.cupy
        index = like.device.id if isinstance(like, cp.ndarray) else None
        return device_scope(index, cp.cuda.Device)

    def stream(self):
        from numba import cuda

        return cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)

    def empty(self, shape, dtype):
        """Work array from CuPy's memory pool."""
        return _wrap(self.cupy.empty(shape, dtype))

    def exclusive_cumsum(self, counts, stream):
        a = self.cupy.asarray(counts)  # on CuPy's current stream: ``stream``
        return _wrap(self.cupy.cumsum(a, axis=1) - a)

    def to_rows(self, obj, axis, compute_dtype):
        cp = self.cupy
        a = cp.asarray(obj)
        moved = a.reshape(1, a.size) if axis is None else cp.moveaxis(a, axis, -1)
        rows = cp.ascontiguousarray(moved.reshape(-1, moved.shape[-1]).astype(compute_dtype, copy=False))
        return _wrap(rows), tuple(moved.shape)

    def sort_rows(self, rows_dev, stream):
        cp = self.cupy
        rows = cp.asarray(rows_dev)
        perm = cp.argsort(rows, axis=-1).astype(cp.int64, copy=False)
        return _wrap(cp.take_along_axis(rows, perm, axis=-1)), _wrap(perm)

    def from_rows(self, x_dev, moved_shape, axis, shape, out_dtype, like):
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
        return _wrap(x)

    def copy_into(self, out, result):
        self.cupy.asarray(out)[...] = self.cupy.asarray(result)


# ------------------------------------------------------------------------- core
def _grid(n, tpb):
    return max(1, -(-n // tpb))


def _unsort_shift(d, window):
    """log2 of the destinations per window: at least ``window``, at most ``_MAX_BUCKETS`` windows."""
    shift = max(0, int(window).bit_length() - 1)
    while ((d - 1) >> shift) + 1 > _MAX_BUCKETS:
        shift += 1
    return shift


def _partitioned_unsort(vals, perm, out, work, stream, tpb, *, stage_val):
    """``out[r, perm[r, k]] = vals[r, k]`` through destination windows (see ``get_unsort_kernels``).

    ``stage_val`` (of ``vals``' shape and dtype, a free array) receives the values grouped
    by window; ``out`` may be ``vals``: every value is staged before the first is written.
    """
    from .cuda_kernels import get_unsort_kernels

    kern = get_unsort_kernels(tpb, _MAX_BUCKETS)
    m, d = vals.shape
    shift = _unsort_shift(d, UNSORT_WINDOW)
    chunk = max(1, int(UNSORT_CHUNK))
    n_chunks = -(-d // chunk)
    n_buckets = ((d - 1) >> shift) + 1
    grid = (n_chunks, m)
    stage_dst = work.empty((m, d), np.int32 if d < 2**31 else np.int64)
    counts = work.empty((m, n_buckets * n_chunks), np.float64)  # float64: k_scan's type, exact to 2**53
    kern.k_bucket_pass[grid, tpb, stream](vals, perm, shift, chunk, counts, stage_val, stage_dst, False)
    starts = work.exclusive_cumsum(counts, stream)
    del counts
    kern.k_bucket_pass[grid, tpb, stream](vals, perm, shift, chunk, starts, stage_val, stage_dst, True)
    kern.k_window_scatter[(_grid(d, tpb), m), tpb, stream](stage_val, stage_dst, out)


def _use_partitioned_unsort(d):
    mode = UNSORT
    if mode not in ("auto", "direct", "partitioned"):
        raise ValueError(f"UNSORT must be 'auto', 'direct' or 'partitioned', got {mode!r}")
    return mode == "partitioned" or (mode == "auto" and d >= UNSORT_MIN_SIZE)


def run_rows(xs, perm, lam, l1, want_labels, stream, *, work=None, tile=None, chunk=None, threads_per_block=None):
    """The prox of sorted rows: ``xs`` (n, d) sorted ascending, ``perm`` its int64 sort permutation.

    ``work`` allocates the work arrays and runs the small scans (default :class:`NumbaWork`;
    the providers use their library's memory pool, so work memory is counted and reused
    there). With the partitioned unsort, ``xs`` is overwritten (it holds the staged values).
    Returns numba device arrays ``out`` ((n, d), ``xs``'s dtype, original order) and
    ``labels`` (int64, or None).
    """
    from .cuda_kernels import (
        LBASE,
        LCNT,
        TILE_FLOAT_FIELDS,
        TILE_INT_FIELDS,
        get_kernels,
        n_levels,
        tile_shared_bytes,
    )

    tile = int(TILE if tile is None else tile)
    chunk = int(CHUNK if chunk is None else chunk)
    tpb = int(THREADS_PER_BLOCK if threads_per_block is None else threads_per_block)
    local = int(LOCAL)
    if tile < 1 or chunk < 1 or tpb < 1:
        raise ValueError(f"TILE, CHUNK and THREADS_PER_BLOCK must be >= 1, got {tile}, {chunk}, {tpb}")
    if local < 0:
        raise ValueError(f"LOCAL must be >= 0, got {local}")
    fused_threads, scan_threads = int(FUSED_LEVEL_THREADS), int(SCAN_THREADS)
    if not (1 <= fused_threads <= 1024 and 1 <= scan_threads <= 1024):
        raise ValueError(
            f"FUSED_LEVEL_THREADS and SCAN_THREADS must be in [1, 1024], got {fused_threads}, {scan_threads}"
        )
    threads, shared = -(-tile // chunk), tile_shared_bytes(tile, chunk)
    if threads > 1024 or shared > _MAX_STATIC_SHARED:
        raise ValueError(
            f"TILE={tile}, CHUNK={chunk} needs {threads} threads and {shared} bytes"
            f" of shared memory per block (at most 1024 and {_MAX_STATIC_SHARED})"
        )
    work = _work_of(work)
    n, d = xs.shape
    partitioned = _use_partitioned_unsort(d)
    kern = get_kernels(tile, chunk, tpb, local)
    nt = -(-d // tile)
    slots = nt * kern.SLOTS
    is32 = xs.dtype == np.float32
    pos_dtype = np.int32 if d < 2**31 - 1 else np.int64
    out = work.empty((n, d), xs.dtype)
    labels = work.empty((n, d), np.int64) if want_labels else None
    levels = n_levels(nt)
    fused_pairs = int(FUSED_LEVEL_PAIRS)
    first_fused = next((lv for lv in range(levels) if -(-nt // (2 << lv)) <= fused_pairs), levels)
    scan_threads = min(scan_threads, max(32, nt))
    for r0 in range(0, n, _MAX_GRID_Y):
        r1 = min(n, r0 + _MAX_GRID_Y)
        m = r1 - r0
        if m == n:  # the usual case: no views (each costs host time)
            xs_c, perm_c, out_c, lab_c = xs, perm, out, labels
        else:
            xs_c, perm_c, out_c = xs[r0:r1], perm[r0:r1], out[r0:r1]
            lab_c = labels[r0:r1] if want_labels else None
        ti = work.empty((m, TILE_INT_FIELDS, nt), np.int64)
        tf = work.empty((m, TILE_FLOAT_FIELDS, nt), np.float64)
        vpos = work.empty((m, slots), pos_dtype)
        vcum = work.empty((m, slots), np.float64)
        kern.k_tile[(nt, m), kern.NC, stream](xs_c, lam, ti, tf, vpos, vcum)
        if first_fused > 0:  # otherwise the scan is the first step of k_levels (or nt == 1: k_tile did it)
            kern.k_scan_offsets[(1, m), scan_threads, stream](d, tf)
        for level in range(first_fused):
            pairs = -(-nt // (2 << level))
            kern.k_bridge[(_grid(pairs, tpb), m), tpb, stream](level, lam, d, ti, vpos, vcum, tf)
            kern.k_update[(_grid(nt, tpb), m), tpb, stream](level, vpos, ti)
        if first_fused < levels:
            kern.k_levels[(1, m), fused_threads, stream](
                first_fused == 0, first_fused, levels, lam, d, ti, vpos, vcum, tf
            )
        grid = (_grid(d, tpb), m)
        if want_labels:
            vlab = work.empty((m, slots), np.int64)
            kern.k_label_flags[(nt, m), tpb, stream](xs_c, d, lam, l1, is32, ti, vpos, vcum, tf, vlab)
            kern.k_scan_fields[(1, m), scan_threads, stream](tf, LCNT, LBASE)
            kern.k_expand_labels[grid, tpb, stream](perm_c, ti, vpos, tf, vlab, lab_c)
            del vlab
        # partitioned: the values go to out in sorted order, then through the windows into out,
        # staged in xs (the short blocks' sums read xs during the expansion, so it cannot be the target)
        kern.k_expand[grid, tpb, stream](xs_c, perm_c, lam, l1, is32, ti, vpos, vcum, tf, out_c, not partitioned)
        # the hull is not needed any more: free it (to the pool) before the unsort's staging arrays
        del ti, tf, vpos, vcum
        if partitioned:
            _partitioned_unsort(out_c, perm_c, out_c, work, stream, tpb, stage_val=xs_c)
    return out, labels


def _work_of(provider):
    """``provider`` if it allocates and scans (``empty``, ``exclusive_cumsum``), else :class:`NumbaWork`."""
    if provider is not None and hasattr(provider, "empty") and hasattr(provider, "exclusive_cumsum"):
        return provider
    return NumbaWork()


def _check_finite_device(rows_dev, moved_shape, axis, shape, stream, work):
    """Raise the API's ValueError for non-finite entries, counted on the device.

    The two status words come from ``work``'s pool (no ``cudaMalloc``/``cudaFree`` per call).
    """
    from .cuda_kernels import k_nonfinite

    if rows_dev.dtype.kind != "f" or rows_dev.size == 0:
        return
    status = work.empty(2, np.int64)
    status.copy_to_device(np.array([0, np.iinfo(np.int64).max], np.int64), stream=stream)
    tpb = int(THREADS_PER_BLOCK)
    k_nonfinite[_grid(rows_dev.size, tpb), tpb, stream](rows_dev, status)
    host = status.copy_to_host(stream=stream)  # one transfer each way; the only host sync before the result
    stream.synchronize()
    c, f = int(host[0]), int(host[1])
    if c == 0:
        return
    idx = np.unravel_index(f, moved_shape)
    if axis is not None:
        idx = list(idx)
        idx.insert(axis, idx.pop())
    raise ValueError(nonfinite_message("w", c, idx))


def solve_sorted(w, run_sorted):
    """The registry entries' common part: sort the rows of ``w``, then ``run_sorted``.

    ``w`` is 2-D, numpy (copied to the device and the results back) or a numba device
    array. The provider is the one of the :func:`prox_device` call in progress (its input's
    library, stream and device), else the default one on numba's current device.
    ``run_sorted(xs, perm, stream, provider)`` returns numba device arrays ``(out, labels)``
    (labels may be None).
    """
    from numba import cuda

    provider = _CALL_PROVIDER.get()
    scope = contextlib.nullcontext()  # inside prox_device: its provider is on the input's device already
    if provider is None:
        provider = get_provider()
        scope = _device_context(provider, None)
    with scope:
        stream = provider.stream()
        host = isinstance(w, np.ndarray)
        rows = cuda.to_device(np.ascontiguousarray(w), stream=stream) if host else w
        xs, perm = provider.sort_rows(rows, stream)
        out, labels = run_sorted(xs, perm, stream, provider)
        if host:
            x = out.copy_to_host(stream=stream)
            lab = labels.copy_to_host(stream=stream) if labels is not None else None
            stream.synchronize()
            return x, lab
        return out, labels


def solve(w, lam, l1, return_clusters):
    """Registry entry: solve every row of the 2-D ``w`` (numpy, or a numba device array)."""
    lam, l1, want = float(lam), float(l1), bool(return_clusters)
    return solve_sorted(w, lambda xs, perm, stream, provider: run_rows(xs, perm, lam, l1, want, stream, work=provider))


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
    with _device_context(provider, w):
        return _prox_on_provider(
            provider, solver, w, lam, l1, ax, shape, compute_dtype, out_dtype, out, return_clusters
        )


def _unpooled_rows(rows, l1, want_labels, stream, provider):
    """The prox when nothing pools (``lam == 0`` or ``d == 1``): the soft threshold, exact.

    Returns device arrays ``(x, labels)``: ``x = sign(rows) max(|rows| - l1, 0)`` (a new
    array, a copy when ``l1 == 0``) and, if ``want_labels``, the ids of ``x``'s distinct
    values numbered in increasing order per row (one sort of ``x``, one scan), as
    :func:`wsprox._api.labels_from_values` numbers them on the host.
    """
    from .cuda_kernels import k_run_starts, k_scatter_run_labels, k_soft_threshold

    work = _work_of(provider)
    tpb = int(THREADS_PER_BLOCK)
    grid = _grid(rows.size, tpb)
    x = work.empty(rows.shape, rows.dtype)
    k_soft_threshold[grid, tpb, stream](rows, l1, x)
    if not want_labels:
        return x, None
    xs, perm = provider.sort_rows(x, stream)
    flags = work.empty(rows.shape, np.float64)
    k_run_starts[grid, tpb, stream](xs, flags)
    starts = work.exclusive_cumsum(flags, stream)
    labels = work.empty(rows.shape, np.int64)
    k_scatter_run_labels[grid, tpb, stream](perm, starts, flags, labels)
    return x, labels


def _prox_on_provider(provider, solver, w, lam, l1, ax, shape, compute_dtype, out_dtype, out, return_clusters):
    """The body of :func:`prox_device` once the provider and the device are chosen."""
    stream = provider.stream()
    rows, moved_shape = provider.to_rows(w, ax, compute_dtype)
    n, d = rows.shape
    solver.check_size(d)
    _check_finite_device(rows, moved_shape, ax, shape, stream, _work_of(provider))
    if n == 0 or d == 0:
        from numba import cuda

        x_rows = rows
        lab_rows = cuda.device_array((n, d), np.int64) if return_clusters else None
    elif lam == 0.0 or d == 1:  # as the numpy API: no pooling, so the exact soft threshold
        x_rows, lab_rows = _unpooled_rows(rows, l1, bool(return_clusters), stream, provider)
    else:
        token = _CALL_PROVIDER.set(provider)  # the solver sorts, allocates and launches on w's library and stream
        try:
            x_rows, lab_rows = solver.solve(rows, lam, l1, bool(return_clusters))
        finally:
            _CALL_PROVIDER.reset(token)
    result = provider.from_rows(x_rows, moved_shape, ax, shape, out_dtype, w)
    if out is not None:
        provider.copy_into(out, result)
        result = out
    if return_clusters:
        return result, provider.from_rows(lab_rows, moved_shape, ax, shape, np.int64, w)
    return result
