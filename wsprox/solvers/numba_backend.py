"""The ``numba`` backend: host driver for the CPU kernels."""

import threading

import numba
import numpy as np

from ._numba_kernels import prox_chunk, prox_rows

#: Largest row length: the permutation is stored as uint32.
MAX_SIZE = 2**32 - 1
#: Batches with fewer elements than this (and single rows) run on the calling thread:
#: waking the thread pool costs more than it saves, and its wake-up latency has long
#: tails on a loaded machine.
PARALLEL_MIN_ELEMENTS = 1 << 16
#: Serial calls on rows up to this length reuse per-thread work buffers (28 bytes per
#: element, so at most about 60 MB per thread stay allocated). Fresh large buffers cost
#: a page fault per 4 KiB on first touch, which on some machines rivals the sort itself.
CACHED_WORKSPACE_MAX = 1 << 21

_local = threading.local()


def _workspace(d):
    """Work buffers for rows of length ``d``: cached per thread for moderate ``d``, else new."""
    cached = getattr(_local, "buffers", None)
    if cached is not None and cached[0].shape[0] >= d:
        return cached
    buffers = (np.empty(d, np.uint64), np.empty(d, np.uint64), np.empty(d, np.uint32), np.empty(d, np.int64))
    if d <= CACHED_WORKSPACE_MAX:
        _local.buffers = buffers
    return buffers


def solve(w, lam, l1, return_clusters):
    """Solve every row of the float32/float64 2-D array ``w`` (see ``register_backend``).

    Several rows are split into chunks solved in parallel (numba's thread pool, sized by
    ``numba.set_num_threads``); one row, or a small batch, is solved serially.
    """
    n, d = w.shape
    out = np.empty((n, d), dtype=w.dtype)
    labels = np.empty((n, d) if return_clusters else (n, 0), dtype=np.int64)
    lam, l1, want = float(lam), float(l1), bool(return_clusters)
    threads = numba.get_num_threads()
    if n == 1 or threads == 1 or n * d < PARALLEL_MIN_ELEMENTS:
        prox_chunk(w, lam, l1, out, labels, want, 0, n, *_workspace(d))
    else:
        prox_rows(w, lam, l1, out, labels, want, min(n, 4 * threads))
    return out, (labels if return_clusters else None)
