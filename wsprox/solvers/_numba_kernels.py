"""numba kernels of the CPU backend: sort, pool adjacent violators, expand (no validation).

Notation (see :mod:`wsprox` Notes): for a row of length ``d`` sorted ascending into
``x_0 <= ... <= x_{d-1}``, the prox is the isotonic regression of ``z_k = x_k + v_k``
with ``v_k = lam (d - 1 - 2k) / (d - 1)``, mapped back through the sort.

The velocity part of a block's sum has a closed form: over positions ``[a, b)`` of
length ``n`` it is ``lam n (d - a - b) / (d - 1)``. So the stack keeps only float64 sums
of ``x_k - c`` (``c`` the row's median, for accuracy), and two adjacent blocks
``L = [a, m)`` and ``R = [m, b)`` pool exactly when their ``x`` means are close enough
for the faster left block to catch up by time 1::

    mean_x(R) - mean_x(L) <= lam (n_L + n_R) / (d - 1)
    <=>  S_R n_L - S_L n_R <= drift n_L n_R (n_L + n_R),   drift = lam / (d - 1)

(cross-multiplied, no division in the loop), and a block's value is
``S / n + drift (d - a - b) + c``. Ties pool (the ``<=``), so adjacent final blocks have
strictly increasing means. Constant inputs come back unchanged, and integer-valued
inputs with an integer ``drift`` are pooled exactly while products stay below 2**53.
"""

import numpy as np
from numba import njit, prange
from numba.extending import overload

from ._sorting import sort_float32, sort_float64


def sort_row(row, keys, scratch, perm):
    """Sort a float32 or float64 row in the work buffers (dispatches on dtype).

    Returns ``(xs, free)``: the sorted values (a view of one buffer) and the other,
    now unused, uint64 buffer.
    """
    if row.dtype == np.float32:
        return sort_float32(row, keys, scratch, perm)
    return sort_float64(row, keys, scratch, perm)


@overload(sort_row)
def _sort_row_overload(row, keys, scratch, perm):
    if row.dtype.bitwidth == 32:
        return lambda row, keys, scratch, perm: sort_float32(row, keys, scratch, perm)
    return lambda row, keys, scratch, perm: sort_float64(row, keys, scratch, perm)


@njit(cache=True)
def overflow_guard(xs, lam, l1):
    """A power of two ``unit`` (1.0 unless values are huge) that keeps every product finite.

    The pooling test multiplies sums of ``n`` values by counts up to ``d``: about
    ``d**3 max(|x|, lam)``. Rows whose values or strengths come near the float64 limit
    are solved in units of ``1/unit`` (exactly: the prox is positively homogeneous,
    ``prox_{s lam R + s l1 |.|}(s w) = s prox_{lam R + l1 |.|}(w)``).
    """
    d = xs.shape[0]
    largest = max(abs(np.float64(xs[0])), abs(np.float64(xs[d - 1])), lam, l1)
    safe = 1e300 / (8.0 * np.float64(d) ** 3)
    unit = 1.0
    while largest * unit > safe:
        unit *= 2.0**-32
    return unit


@njit(cache=True)
def pool_blocks(xs, unit, drift, center, block_end, block_sum):
    """Pool adjacent violators over the sorted row ``xs``; return the number of blocks.

    Block ``j`` covers positions ``[block_end[j-1], block_end[j])`` and
    ``block_sum[j]`` is the float64 sum of ``unit * xs - center`` over it. ``drift`` is
    ``lam / (d - 1)`` and ``center`` the median, in the same units.
    """
    d = xs.shape[0]
    top = -1
    for k in range(d):
        s = np.float64(xs[k]) * unit - center
        n = np.float64(1.0)
        while top >= 0:
            start = block_end[top - 1] if top > 0 else 0
            n_left = np.float64(block_end[top] - start)
            s_left = block_sum[top]
            if s * n_left - s_left * n <= drift * n_left * n * (n_left + n):
                s += s_left
                n += n_left
                top -= 1
            else:
                break
        top += 1
        block_sum[top] = s
        block_end[top] = k + 1
    return top + 1


@njit(cache=True)
def soft_threshold(m, l1):
    """``sign(m) max(|m| - l1, 0)``, returning +0.0 (never -0.0) for thresholded values."""
    if m > l1:
        return m - l1
    if m < -l1:
        return m + l1
    return 0.0


@njit(cache=True)
def expand_blocks(xs, perm, unit, drift, l1, center, block_end, block_sum, n_blocks, out, labels, want_labels):
    """Write each block's value (and cluster id) to the original positions of its elements.

    Block values are ``mean + drift (d - a - b) + center`` (for a single element, ``x + v``
    directly: no cancellation against the median in rows of huge dynamic range), made
    non-decreasing
    (guarding against rounding), soft-thresholded by ``l1``, divided by ``unit`` and cast
    to ``out.dtype``; cluster ids count distinct cast values in increasing order.
    """
    d = perm.shape[0]
    start = 0
    label = -1
    previous = -np.inf
    previous_cast = out.dtype.type(0)
    for j in range(n_blocks):
        end = block_end[j]
        n = end - start
        if n == 1:
            m = np.float64(xs[start]) * unit + drift * np.float64(d - start - end)
        else:
            m = block_sum[j] / n + drift * np.float64(d - start - end) + center
        if m < previous:
            m = previous
        previous = m
        if l1 > 0.0:
            m = soft_threshold(m, l1)
        value = out.dtype.type(m / unit)
        if j == 0 or value != previous_cast:
            label += 1
        previous_cast = value
        for k in range(start, end):
            i = perm[k]
            out[i] = value
            if want_labels:
                labels[i] = label
        start = end


@njit(cache=True)
def prox_row(row, lam, l1, out, labels, want_labels, keys, scratch, perm, block_end):
    """Prox of one row (any float32/float64 layout) into ``out`` and ``labels``.

    ``keys``, ``scratch`` (uint64), ``perm`` (uint32) and ``block_end`` (int64) are work
    buffers at least as long as the row.
    """
    d = row.shape[0]
    if d == 0:
        return
    xs, free = sort_row(row, keys[:d], scratch[:d], perm[:d])
    unit = overflow_guard(xs, lam, l1)
    center = np.float64(xs[d // 2]) * unit
    block_sum = free.view(np.float64)
    drift = lam * unit / np.float64(d - 1) if d > 1 else 0.0
    n_blocks = pool_blocks(xs, unit, drift, center, block_end, block_sum)
    expand_blocks(
        xs, perm[:d], unit, drift, l1 * unit, center, block_end, block_sum, n_blocks, out, labels, want_labels
    )


@njit(cache=True)
def prox_chunk(w, lam, l1, out, labels, want_labels, first, stop, keys, scratch, perm, block_end):
    """Prox of rows ``first..stop-1`` of ``w`` in the given work buffers (row length or more)."""
    for r in range(first, stop):
        prox_row(w[r], lam, l1, out[r], labels[r], want_labels, keys, scratch, perm, block_end)


@njit(cache=True)
def prox_chunk_alloc(w, lam, l1, out, labels, want_labels, first, stop):
    """:func:`prox_chunk` with work buffers allocated here, once for the chunk."""
    d = w.shape[1]
    keys = np.empty(d, np.uint64)
    scratch = np.empty(d, np.uint64)
    perm = np.empty(d, np.uint32)
    block_end = np.empty(d, np.int64)
    prox_chunk(w, lam, l1, out, labels, want_labels, first, stop, keys, scratch, perm, block_end)


@njit(cache=True, parallel=True)
def prox_rows(w, lam, l1, out, labels, want_labels, n_chunks):
    """Prox of every row of the 2-D array ``w``, in ``n_chunks`` chunks of rows run in parallel.

    ``labels`` is ``(n, d)`` int64 when ``want_labels`` is true and ``(n, 0)`` otherwise.
    ``n_chunks`` is between 1 and the number of rows.
    """
    n = w.shape[0]
    for c in prange(n_chunks):
        prox_chunk_alloc(w, lam, l1, out, labels, want_labels, c * n // n_chunks, (c + 1) * n // n_chunks)
