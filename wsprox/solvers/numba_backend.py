"""The ``numba`` backend: host driver for the CPU kernels.

Each row is packed into sort keys, sorted, and solved from the sorted keys (see
:mod:`._numba_kernels`). The sort is either the kernels' own radix sort, inside one
compiled loop over the rows, or numpy's ``ndarray.sort`` on blocks of packed rows between
two compiled steps. :mod:`._sort_engine` picks the faster for this machine; both give
bit-identical results. Every compiled step releases the GIL, and a thread pool of this
module solves blocks of rows of a batch in parallel (numba's own parallel loops are not
used: see :func:`_solve_parallel`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
import numpy as np

from ._numba_kernels import (
    pack_narrow_rows,
    pack_rows,
    prox_chunk,
    prox_sorted_narrow_rows,
    prox_sorted_rows,
)
from ._sort_engine import NARROW_MAX, sort_engine

#: Largest row length: the permutation is stored as uint32.
MAX_SIZE = 2**32 - 1
#: Batches with fewer elements than this (and single rows) run on the calling thread:
#: waking a thread pool costs more than it saves, and its wake-up latency has long
#: tails on a loaded machine.
PARALLEL_MIN_ELEMENTS = 1 << 16
#: Serial calls on rows up to this length reuse work buffers kept by the calling thread
#: (36 bytes per element, so at most about 75 MB stay allocated). Fresh large buffers
#: cost a page fault per 4 KiB on first touch, which on some machines rivals the sort.
CACHED_WORKSPACE_MAX = 1 << 21
#: The same for the threads of the pool (batches of several rows), with a lower bound
#: (at most about 3 MB per thread), since every thread of the pool keeps its own.
CACHED_WORKSPACE_MAX_POOLED = 1 << 16
#: With numpy's sort, rows are packed, sorted and solved in blocks of about this many
#: elements (at least one row), so the key block stays in cache and its buffer small.
KEY_BLOCK_ELEMENTS = 1 << 16

_local = threading.local()
_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _workspace(d, key_elements, cache_max=CACHED_WORKSPACE_MAX):
    """Work buffers ``(keys, scratch, perm, block_end, block_sum)`` for rows of length ``d``.

    ``keys`` holds at least ``key_elements`` elements. Kept by the calling thread for the
    next call when no larger than ``cache_max`` elements, else new.
    """
    cached = getattr(_local, "buffers", None)
    if cached is not None and cached[1].shape[0] >= d and cached[0].shape[0] >= key_elements:
        return cached
    buffers = (
        np.empty(key_elements, np.uint64),
        np.empty(d, np.uint64),
        np.empty(d, np.uint32),
        np.empty(d, np.int64),
        np.empty(d, np.float64),
    )
    if max(d, key_elements) <= cache_max:
        _local.buffers = buffers
    return buffers


def _forget_pool_after_fork():
    """In a forked child the parent's pool threads are gone and its lock may be held."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _executor(workers):
    """This process's thread pool (made anew after a fork: the parent's threads are gone)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < workers:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)  # too small now (more threads allowed): let its threads end
            _pool = (os.getpid(), workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wsprox"))
        return _pool[2]


def _solve_numpy_sort(w, lam, l1, out, labels, want, first, stop, workspace=None):
    """Rows ``first..stop-1`` with numpy's sort, in blocks of about ``KEY_BLOCK_ELEMENTS``.

    ``workspace``: buffers from :func:`_workspace` for at least one block (else taken here).
    """
    d = w.shape[1]
    rows_per_block = max(1, KEY_BLOCK_ELEMENTS // d)
    if workspace is None:
        workspace = _workspace(d, min(rows_per_block, stop - first) * d)
    keys, scratch, perm, block_end, block_sum = workspace
    narrow = d <= NARROW_MAX
    for a in range(first, stop, rows_per_block):
        b = min(a + rows_per_block, stop)
        if narrow:
            block = keys.view(np.uint32)[: (b - a) * d].reshape(b - a, d)
            if not pack_narrow_rows(w, a, b, block):
                block.sort(axis=1)
            prox_sorted_narrow_rows(w, a, b, block, lam, l1, out, labels, want, scratch, perm, block_end, block_sum)
        else:
            block = keys[: (b - a) * d].reshape(b - a, d)
            if not pack_rows(w, a, b, block):
                block.sort(axis=1)
            prox_sorted_rows(w, a, b, block, lam, l1, out, labels, want, scratch, perm, block_end)


def _solve_radix_sort(w, lam, l1, out, labels, want, first, stop, workspace=None):
    """Rows ``first..stop-1`` with the radix sort, on the calling thread.

    ``workspace``: buffers from :func:`_workspace` for one row (else taken here).
    """
    d = w.shape[1]
    if workspace is None:
        workspace = _workspace(d, d)
    prox_chunk(w, lam, l1, out, labels, want, first, stop, *workspace[:4])


def solve(w, lam, l1, return_clusters):
    """Solve every row of the float32/float64 2-D array ``w`` (see ``register_backend``).

    Several rows are solved in parallel on ``numba.get_num_threads()`` threads (see
    :func:`_solve_parallel`); one row, or a small batch, is solved serially.
    """
    n, d = w.shape
    out = np.empty((n, d), dtype=w.dtype)
    labels = np.empty((n, d) if return_clusters else (n, 0), dtype=np.int64)
    lam, l1, want = float(lam), float(l1), bool(return_clusters)
    solve_rows = _solve_numpy_sort if sort_engine(d) == "numpy" else _solve_radix_sort
    threads = 1 if n == 1 or n * d < PARALLEL_MIN_ELEMENTS else _thread_count()
    if threads == 1:
        solve_rows(w, lam, l1, out, labels, want, 0, n)
    else:
        _solve_parallel(solve_rows, (w, lam, l1, out, labels, want), threads)
    return out, (labels if return_clusters else None)


def _thread_count():
    """``numba.get_num_threads()``, or ``NUMBA_NUM_THREADS`` where no numba threading layer loads.

    The backend runs no numba parallel code; it only takes numba's thread count, which
    raises ValueError when the layer asked for (``NUMBA_THREADING_LAYER=tbb`` without TBB)
    cannot be loaded.
    """
    try:
        return numba.get_num_threads()
    except ValueError:
        return numba.config.NUMBA_NUM_THREADS


def _solve_parallel(solve_rows, args, threads):
    """All rows, by ``solve_rows`` (an engine's solver), on ``threads`` threads (the calling thread is one).

    The threads are those of this module's pool, running GIL-free compiled code, not
    numba's parallel loops: numba's default threading layer on Linux (GNU OpenMP) cannot
    run again in a process forked after it ran, and its fallback (``workqueue``) aborts
    the process when two threads enter it at once; a Python thread pool has neither
    limit. The rows are cut into blocks (at most a key block of :func:`_solve_numpy_sort`,
    and at least four per thread where there are enough rows) that the threads take one at
    a time, so that a thread slowed down (by other work on its CPU) leaves more blocks to
    the others instead of holding up the call. Returns only when every thread that took
    part has stopped, also when one raised: then no new blocks are started and the first
    error is raised (the calling thread's own before the pool's). Pool threads busy with
    other callers' batches do not hold a call up: the calling thread solves what they
    leave, and their queued jobs are cancelled.
    """
    n, d = args[0].shape
    # At most one key block per block of rows, and at least about four blocks per thread.
    rows_per_block = max(1, min(KEY_BLOCK_ELEMENTS // d, -(-n // (4 * threads))))
    blocks = _BlockQueue(n, rows_per_block)
    jobs = []
    pool = _executor(threads - 1)
    for _ in range(min(threads, blocks.count) - 1):
        try:
            jobs.append(pool.submit(_solve_blocks, solve_rows, blocks, args, CACHED_WORKSPACE_MAX_POOLED))
        except RuntimeError:  # the interpreter is shutting down: no new threads
            break
    try:
        _solve_blocks(solve_rows, blocks, args, CACHED_WORKSPACE_MAX)
    finally:
        # A job still queued (behind another caller's batch in the shared pool) would find
        # no block left: cancel it instead of waiting for its turn.
        started = [job for job in jobs if not job.cancel()]
        wait(started)
    for job in started:
        job.result()


class _BlockQueue:
    """Hands out blocks of rows ``(first, stop)`` to threads, until all are taken or one failed."""

    def __init__(self, n, rows_per_block):
        self.n = n
        self.rows_per_block = rows_per_block
        self.count = -(-n // rows_per_block)
        self._next = 0
        self._lock = threading.Lock()
        self.failed = False

    def take(self):
        """The next block, or None when there is none left (or a thread failed)."""
        with self._lock:
            first = self._next
            if self.failed or first >= self.n:
                return None
            self._next = first + self.rows_per_block
        return first, min(first + self.rows_per_block, self.n)


def _solve_blocks(solve_rows, blocks, args, cache_max):
    """Solve blocks taken from ``blocks`` until none is left; a failure stops the others."""
    try:
        d = args[0].shape[1]
        # numpy's sort needs the keys of a whole block of rows, the radix sort those of one row
        key_elements = min(blocks.rows_per_block, blocks.n) * d if solve_rows is _solve_numpy_sort else d
        workspace = _workspace(d, key_elements, cache_max)
        while (block := blocks.take()) is not None:
            solve_rows(*args, *block, workspace)
    except BaseException:
        blocks.failed = True
        raise
