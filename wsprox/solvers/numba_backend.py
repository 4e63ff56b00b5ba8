"""The ``numba`` backend: host driver for the CPU kernels."""

import numba
import numpy as np

from ._numba_kernels import prox_rows

#: Largest row length: the permutation is stored as uint32.
MAX_SIZE = 2**32 - 1


def solve(w, lam, l1, return_clusters):
    """Solve every row of the float32/float64 2-D array ``w`` (see ``register_backend``)."""
    n, d = w.shape
    out = np.empty((n, d), dtype=w.dtype)
    labels = np.empty((n, d) if return_clusters else (n, 0), dtype=np.int64)
    n_chunks = max(1, min(n, 4 * numba.get_num_threads()))
    prox_rows(w, float(lam), float(l1), out, labels, bool(return_clusters), n_chunks)
    return out, (labels if return_clusters else None)
