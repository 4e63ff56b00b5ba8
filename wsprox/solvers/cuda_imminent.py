"""The ``cuda-imminent`` backend: the paper's "imminent collisions" algorithm, a comparison baseline.

After the sort, every element is a block. One *round* finds every adjacent pair of blocks
that violates the order (``mean z(left) >= mean z(right)``, the same cross-multiplied
float64 rule as every wsprox backend) and merges all of them at once (chains of violating
pairs merge into one block), then compacts the block list with a scan. Rounds repeat
until nothing merges. It is exact (the fixed point is the isotonic regression), but the
number of rounds depends on the data: about 15-20 on Gaussian weights, and about ``d/2``
on the adversarial ramp (``d/2`` zeros followed by ``a * (1..d/2)``, ``a = 2.25 lam / d``),
where one heavy block absorbs a single neighbour per round. Each round costs a few launches
and a host synchronisation. Use the ``cuda`` backend; this one exists to show the
difference (``asv_bench/bench_cuda.py``).

Accuracy: a block's sum is the float64 sum of ``x - median`` over its elements, added in
the order the blocks merge, without the ``cuda`` backend's tile references and
compensated offset scan. A block that grows by one neighbour per round (the ramp above)
is a sequential sum, so the error of its mean can reach about ``|B|`` units of
``2**-53 max_B |x - median|``: it grows with the block, as the paper's algorithm does, and
is not the accuracy :func:`wsprox.prox` documents for ``cuda``. Rows near the float64
limit are solved in units of a power of two, as in every backend.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from numba import cuda, float64, int64

from .cuda_kernels import get_scan_kernel, overflow_unit, soft_cast

__all__ = ["solve", "run_rows"]

#: Threads per block of every launch (tests patch it).
THREADS_PER_BLOCK = 128


@functools.cache
def _kernels(tpb):
    import types

    TPB = int(tpb)

    @cuda.jit
    def k_init(xs, lam, bstart, bsum, nblk, units):
        """Singleton blocks; sums of ``x - median`` in units of ``1 / units[r]`` (overflow scaling)."""
        k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        d = xs.shape[1]
        unit = overflow_unit(max(abs(float64(xs[r, 0])), abs(float64(xs[r, d - 1])), lam), d)
        if k < d:
            bstart[r, k] = k
            bsum[r, k] = float64(xs[r, k]) * unit - float64(xs[r, d // 2]) * unit
        if k == 0:
            bstart[r, d] = d
            nblk[r] = d
            units[r] = unit

    @cuda.jit
    def k_mark(lam, d, bstart, bsum, nblk, head, changed, units):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        nb = nblk[r]
        if j >= head.shape[1]:
            return
        if j >= nb:
            head[r, j] = 0.0
            return
        if j == 0:
            head[r, j] = 1.0
            return
        scale = float64(d - 1) if d > 1 else 1.0
        lam = lam * units[r]
        n_l = float64(bstart[r, j] - bstart[r, j - 1])
        n_r = float64(bstart[r, j + 1] - bstart[r, j])
        if scale * (bsum[r, j] * n_l - bsum[r, j - 1] * n_r) <= lam * n_l * n_r * (n_l + n_r):
            head[r, j] = 0.0
            changed[0] = 1
        else:
            head[r, j] = 1.0

    k_scan = get_scan_kernel(TPB)

    @cuda.jit
    def k_compact(bstart, bsum, nblk, head, idx, nstart, nsum, nnew):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        nb = nblk[r]
        if j >= nb or head[r, j] == 0.0:
            return
        ni = int64(idx[r, j])
        s = bsum[r, j]
        e = j + 1
        while e < nb and head[r, e] == 0.0:
            s += bsum[r, e]
            e += 1
        nstart[r, ni] = bstart[r, j]
        nsum[r, ni] = s
        if e == nb:
            nstart[r, ni + 1] = bstart[r, nb]
            nnew[r] = ni + 1

    @cuda.jit
    def k_values(xs, perm, lam, l1, is32, bstart, bsum, nblk, units, out, want_labels, flag, vals):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        nb = nblk[r]
        if j >= nb:
            return
        d = xs.shape[1]
        scale = float64(d - 1) if d > 1 else 1.0
        unit = units[r]
        lam = lam * unit
        center = float64(xs[r, d // 2]) * unit
        a = bstart[r, j]
        b = bstart[r, j + 1]
        m = bsum[r, j] / float64(b - a) + lam * float64(d - a - b) / scale + center
        if j > 0:
            a0 = bstart[r, j - 1]
            mp = bsum[r, j - 1] / float64(a - a0) + lam * float64(d - a0 - a) / scale + center
            if m < mp:
                m = mp
        m = soft_cast(m / unit, l1, is32)
        vals[r, j] = m
        for k in range(a, b):
            out[r, perm[r, k]] = m

    @cuda.jit
    def k_flags(vals, nblk, flag):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if j >= flag.shape[1]:
            return
        if j >= nblk[r]:
            flag[r, j] = 0.0
        elif j == 0 or vals[r, j] != vals[r, j - 1]:
            flag[r, j] = 1.0
        else:
            flag[r, j] = 0.0

    @cuda.jit
    def k_labels(perm, bstart, nblk, flag, lscan, labels):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if j >= nblk[r]:
            return
        lab = int64(lscan[r, j] + flag[r, j]) - 1
        for k in range(bstart[r, j], bstart[r, j + 1]):
            labels[r, perm[r, k]] = lab

    return types.SimpleNamespace(
        k_init=k_init,
        k_mark=k_mark,
        k_scan=k_scan,
        k_compact=k_compact,
        k_values=k_values,
        k_flags=k_flags,
        k_labels=k_labels,
    )


def run_rows(
    xs, perm, lam, l1, want_labels, stream, *, max_rounds=None, deadline=None, threads_per_block=None, work=None
):
    """Imminent collisions on sorted rows; returns numba device arrays ``(out, labels or None, rounds)``.

    ``work`` allocates the work arrays (the sort provider, so its memory pool; default
    numba's allocator), as in :func:`wsprox.solvers.cuda_backend.run_rows`. ``deadline``
    is a :func:`time.perf_counter` value; it is checked once per round, when the round's
    "anything merged?" flag reaches the host anyway.

    Raises
    ------
    TimeoutError
        If ``max_rounds`` rounds were not enough, or the deadline passed before convergence.
    """
    from .cuda_backend import _work_of

    tpb = int(THREADS_PER_BLOCK if threads_per_block is None else threads_per_block)
    kern = _kernels(tpb)
    work = _work_of(work)
    n, d = xs.shape
    grid = (max(1, -(-d // tpb)), n)
    bstart = work.empty((n, d + 1), np.int64)
    bsum = work.empty((n, d), np.float64)
    nstart = work.empty((n, d + 1), np.int64)
    nsum = work.empty((n, d), np.float64)
    nblk = work.empty(n, np.int64)
    nnew = work.empty(n, np.int64)
    units = work.empty(n, np.float64)
    head = work.empty((n, d), np.float64)
    idx = work.empty((n, d), np.float64)
    changed = work.empty(1, np.int64)
    kern.k_init[grid, tpb, stream](xs, float(lam), bstart, bsum, nblk, units)
    rounds = 0
    while True:
        changed.copy_to_device(np.zeros(1, np.int64), stream=stream)
        kern.k_mark[grid, tpb, stream](float(lam), d, bstart, bsum, nblk, head, changed, units)
        if int(changed.copy_to_host(stream=stream)[0]) == 0:
            break
        rounds += 1
        if max_rounds is not None and rounds > max_rounds:
            raise TimeoutError(f"imminent collisions did not converge in {max_rounds} rounds")
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeoutError(f"imminent collisions did not converge before the deadline ({rounds} rounds run)")
        kern.k_scan[n, tpb, stream](head, idx)
        kern.k_compact[grid, tpb, stream](bstart, bsum, nblk, head, idx, nstart, nsum, nnew)
        bstart, nstart = nstart, bstart
        bsum, nsum = nsum, bsum
        nblk, nnew = nnew, nblk
    out = work.empty((n, d), xs.dtype)
    vals = work.empty((n, d), np.float64)
    flag = work.empty((n, d), np.float64)
    is32 = xs.dtype == np.float32
    kern.k_values[grid, tpb, stream](
        xs, perm, float(lam), float(l1), is32, bstart, bsum, nblk, units, out, want_labels, flag, vals
    )
    labels = None
    if want_labels:
        lscan = work.empty((n, d), np.float64)
        labels = work.empty((n, d), np.int64)
        kern.k_flags[grid, tpb, stream](vals, nblk, flag)
        kern.k_scan[n, tpb, stream](flag, lscan)
        kern.k_labels[grid, tpb, stream](perm, bstart, nblk, flag, lscan, labels)
    return out, labels, rounds


def solve(w, lam, l1, return_clusters, *, max_rounds=None, deadline=None):
    """Registry entry: every row of the 2-D ``w`` (numpy, or a device array); limits as in :func:`run_rows`."""
    from .cuda_backend import solve_sorted

    lam, l1, want = float(lam), float(l1), bool(return_clusters)

    def run_sorted(xs, perm, stream, provider):
        out, labels, _ = run_rows(
            xs, perm, lam, l1, want, stream, max_rounds=max_rounds, deadline=deadline, work=provider
        )
        return out, labels

    return solve_sorted(w, run_sorted)
