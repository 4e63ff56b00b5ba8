"""numba kernels of the CPU backend: sort, pool adjacent violators, expand (no validation).

Notation (see :mod:`wsprox` Notes): for a row of length ``d`` sorted ascending into
``x_0 <= ... <= x_{d-1}``, the prox is the isotonic regression of ``z_k = x_k + v_k``
with ``v_k = lam (d - 1 - 2k) / (d - 1)``, mapped back through the sort.

The velocity part of a block's sum has a closed form: over positions ``[a, b)`` of
length ``n`` it is ``lam n (d - a - b) / (d - 1)``. So the stack keeps only float64 sums
``S = sum (x_k - x_r)`` relative to the block's middle element ``r = (a + b) // 2`` (a
value inside the block, so the rounding is relative to the block's own spread), and only
for merged blocks (a singleton's sum is 0). Two adjacent blocks ``L = [a, m)`` and
``R = [m, b)`` pool exactly when their ``x`` means are close enough for the faster left
block to catch up by time 1::

    mean_x(R) - mean_x(L) <= lam (n_L + n_R) / (d - 1)
    <=>  (x_{r_R} - x_{r_L}) n_L n_R + S_R n_L - S_L n_R <= drift n_L n_R (n_L + n_R)

with ``drift = lam / (d - 1)`` (cross-multiplied, no division in the loop), and a block's
value is ``S / n + drift (d - a - b) + x_r``. Ties pool (the ``<=``, and equal values
without a test), so adjacent final blocks have strictly increasing means. Constant
inputs come back unchanged, and integer-valued inputs with an integer ``drift`` are
pooled exactly while products stay below 2**53.

Two ways through a row: :func:`prox_row` packs, radix-sorts and solves it in one
compiled call (:func:`prox_chunk` for consecutive rows); or the
caller packs a block of rows (:func:`pack_rows`, :func:`pack_narrow_rows`), sorts the
keys with numpy and solves them (:func:`prox_sorted_rows`, :func:`prox_sorted_narrow_rows`).
Every kernel releases the GIL, so the driver can run blocks on several threads.
"""

import numpy as np
from numba import njit
from numba.extending import overload

from ._scaling import overflow_unit as _overflow_unit
from ._sorting import (
    pack_float32,
    pack_float64,
    pack_narrow,
    packed_radix_sort,
    unpack_float32,
    unpack_float64,
    unpack_narrow,
)

overflow_unit = njit(cache=True, nogil=True, inline="always")(_overflow_unit)


def pack_row(row, keys):
    """Packed sort keys of a float32 or float64 row into ``keys[:d]`` (dispatches on dtype).

    Returns True if they are already in order.
    """
    if row.dtype == np.float32:
        return pack_float32(row, keys)
    return pack_float64(row, keys)


@overload(pack_row)
def _pack_row_overload(row, keys):
    if row.dtype.bitwidth == 32:
        return lambda row, keys: pack_float32(row, keys)
    return lambda row, keys: pack_float64(row, keys)


def unpack_row(row, packed, buffer, perm):
    """Sorted values (a view of the uint64 ``buffer``) and ``perm`` from the sorted packed keys."""
    d = row.shape[0]
    if row.dtype == np.float32:
        xs = buffer.view(np.float32)[:d]
        unpack_float32(packed, xs, perm)
    else:
        xs = buffer.view(np.float64)[:d]
        unpack_float64(row, packed, xs, perm)
    return xs


@overload(unpack_row)
def _unpack_row_overload(row, packed, buffer, perm):
    if row.dtype.bitwidth == 32:

        def unpack32(row, packed, buffer, perm):
            xs = buffer.view(np.float32)[: row.shape[0]]
            unpack_float32(packed, xs, perm)
            return xs

        return unpack32

    def unpack64(row, packed, buffer, perm):
        xs = buffer.view(np.float64)[: row.shape[0]]
        unpack_float64(row, packed, xs, perm)
        return xs

    return unpack64


def unpack_narrow_row(row, packed, buffer, perm):
    """``(xs, done)`` from sorted narrow keys: sorted values (a view of ``buffer``) and ``perm``.

    ``done`` is False if the exact ordering gave up (see ``_sorting.unpack_narrow``).
    """
    d = row.shape[0]
    if row.dtype == np.float32:
        xs = buffer.view(np.float32)[:d]
        return xs, unpack_narrow(row, packed, xs, xs.view(np.uint32), perm)
    xs = buffer.view(np.float64)[:d]
    return xs, unpack_narrow(row, packed, xs, xs.view(np.uint64), perm)


@overload(unpack_narrow_row)
def _unpack_narrow_row_overload(row, packed, buffer, perm):
    if row.dtype.bitwidth == 32:

        def unpack32(row, packed, buffer, perm):
            xs = buffer.view(np.float32)[: row.shape[0]]
            return xs, unpack_narrow(row, packed, xs, xs.view(np.uint32), perm)

        return unpack32

    def unpack64(row, packed, buffer, perm):
        xs = buffer.view(np.float64)[: row.shape[0]]
        return xs, unpack_narrow(row, packed, xs, xs.view(np.uint64), perm)

    return unpack64


@njit(cache=True, nogil=True)
def overflow_guard(xs, lam, l1):
    """The power of two ``unit`` of :func:`~wsprox.solvers._scaling.overflow_unit` for the sorted row ``xs``.

    Rows whose values or strengths come near the float64 limit are solved in units of
    ``1/unit`` (exactly: the prox is positively homogeneous).
    """
    d = xs.shape[0]
    largest = max(abs(np.float64(xs[0])), abs(np.float64(xs[d - 1])), lam, l1)
    return overflow_unit(largest, d)


@njit(cache=True, nogil=True, inline="always")
def middle_value(xs, a, b, unit):
    """The reference of block ``[a, b)``: its middle element ``xs[(a + b) // 2]``, in units of ``1 / unit``."""
    return np.float64(xs[(a + b) // 2]) * unit


@njit(cache=True, nogil=True)
def pool_blocks(xs, unit, drift, bounds, sums):
    """Pool adjacent violators over the sorted row ``xs``; return the number of merged blocks.

    Only blocks of two or more elements are stored: merged block ``j`` covers positions
    ``[a, b) = [bounds[2 j], bounds[2 j + 1])`` and ``sums[j]`` is the float64 sum of
    ``unit (xs[k] - xs[r])`` over it, relative to the block's middle element ``r = (a +
    b) // 2`` (so ``bounds`` needs ``d`` entries and ``sums`` ``d // 2``). Every other
    position is a block of its own. ``drift`` is ``lam / (d - 1)``, in the same units.

    Sums relative to a value inside the block keep the rounding relative to the block's
    own spread: far-away values of the row (huge or tiny) never cancel against it.
    Tied values always pool (exact PAVA pools them too), so they share an output
    whatever the rounding.

    The open block lives in registers and reaches the arrays only when it is closed
    with two or more elements. So the common step of most rows (a singleton that does
    not pool) stores nothing, and a singleton's sum (0) and reference (itself) need no
    storage.
    """
    d = xs.shape[0]
    top = 0  # merged blocks 0..top-1 are in the arrays; the open block is [start_open, k), sum s_open about r_open
    start_open = 0
    r_open = np.float64(xs[0]) * unit
    s_open = np.float64(0.0)
    n_open = np.float64(1.0)
    for k in range(1, d):
        x = np.float64(xs[k]) * unit
        if xs[k] != xs[k - 1] and (x - r_open) * n_open - s_open > drift * n_open * (n_open + 1.0):
            if n_open > 1.0:  # no merge: close the open block (stored if merged), open a singleton
                bounds[2 * top] = start_open
                bounds[2 * top + 1] = k
                sums[top] = s_open
                top += 1
            start_open = k
            r_open = x
            s_open = np.float64(0.0)
            n_open = np.float64(1.0)
            continue
        start = start_open
        end = k + 1
        r = middle_value(xs, start, end, unit)
        s = s_open + n_open * (r_open - r) + (x - r)
        n = n_open + 1.0
        while start > 0:  # the block to the left: the last merged one if it ends here, else a singleton
            stored = top > 0 and bounds[2 * top - 1] == start
            if stored:
                left_start = bounds[2 * top - 2]
                s_left = sums[top - 1]
            else:
                left_start = start - 1
                s_left = np.float64(0.0)
            r_left = middle_value(xs, left_start, start, unit)
            n_left = np.float64(start - left_start)
            if (r - r_left) * n_left * n + s * n_left - s_left * n > drift * n_left * n * (n_left + n):
                break
            start = left_start
            r_new = middle_value(xs, start, end, unit)
            s += n * (r - r_new) + s_left + n_left * (r_left - r_new)
            r = r_new
            n += n_left
            if stored:
                top -= 1
        start_open = start
        r_open = r
        s_open = s
        n_open = n
    if n_open > 1.0:
        bounds[2 * top] = start_open
        bounds[2 * top + 1] = d
        sums[top] = s_open
        top += 1
    return top


@njit(cache=True, nogil=True)
def soft_threshold(m, l1):
    """``sign(m) max(|m| - l1, 0)``, returning +0.0 (never -0.0) for thresholded values."""
    if m > l1:
        return m - l1
    if m < -l1:
        return m + l1
    return 0.0


@njit(cache=True, nogil=True)
def expand_blocks(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, want_labels):
    """Write each block's value (and cluster id) to the original positions of its elements.

    The blocks are the merged ones of :func:`pool_blocks` and the singletons between
    them. Values are ``S / n + drift (d - a - b) + x_r`` for a merged block over
    ``[a, b)`` (``x_r`` its middle element) and ``x + v`` directly for a singleton,
    made non-decreasing (guarding against rounding), soft-thresholded by ``l1``, scaled
    back by ``1 / unit`` (a power of two: exact) and cast to ``out.dtype``; cluster ids
    count distinct cast values in increasing order.
    """
    # One call site per combination of the two switches, each with constant switches,
    # so that the compiled loop carries no test of them (worth a third of its time).
    if l1 > 0.0:
        if want_labels:
            _expand(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, True, True)
        else:
            _expand(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, True, False)
    elif want_labels:
        _expand(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, False, True)
    else:
        _expand(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, False, False)


@njit(cache=True, nogil=True, inline="always")
def _output_value(m, previous, previous_cast, label, first, l1, scale, out, with_l1):
    """``(value, previous, label)`` of a block of value ``m``: guarded, thresholded, scaled and cast.

    ``previous`` is the guarded value of the block before (``-inf`` for the first) and
    ``previous_cast`` its output; ``label`` counts distinct outputs so far.
    """
    m = max(m, previous)
    previous = m
    if with_l1:
        m = soft_threshold(m, l1)
    value = out.dtype.type(m * scale)
    label += first | (value != previous_cast)
    return value, previous, label


@njit(cache=True, nogil=True, inline="always")
def _expand(xs, perm, unit, drift, l1, bounds, sums, n_merged, out, labels, with_l1, want_labels):
    """The loops of :func:`expand_blocks`; ``with_l1`` and ``want_labels`` are constants at each call."""
    d = perm.shape[0]
    scale = 1.0 / unit
    label = -1
    previous = -np.inf
    previous_cast = out.dtype.type(0)
    position = 0
    for j in range(n_merged + 1):
        start = bounds[2 * j] if j < n_merged else d
        for k in range(position, start):  # the singletons before merged block j
            m = np.float64(xs[k]) * unit + drift * np.float64(d - 2 * k - 1)
            value, previous, label = _output_value(m, previous, previous_cast, label, k == 0, l1, scale, out, with_l1)
            previous_cast = value
            i = perm[k]
            out[i] = value
            if want_labels:
                labels[i] = label
        if j == n_merged:
            break
        end = bounds[2 * j + 1]
        m = sums[j] / np.float64(end - start) + drift * np.float64(d - start - end) + middle_value(xs, start, end, unit)
        value, previous, label = _output_value(m, previous, previous_cast, label, start == 0, l1, scale, out, with_l1)
        previous_cast = value
        if want_labels:
            for k in range(start, end):
                i = perm[k]
                out[i] = value
                labels[i] = label
        else:
            for k in range(start, end):
                out[perm[k]] = value
        position = end


@njit(cache=True, nogil=True)
def prox_sorted_row(row, packed, scratch, perm, block_end, lam, l1, out, labels, want_labels):
    """Prox of one row (length ``d >= 1``) from its packed keys sorted ascending.

    ``packed`` (the sorted keys, clobbered), ``scratch`` (uint64), ``perm`` (uint32) and
    ``block_end`` (int64) are work buffers of length ``d`` or more.
    """
    xs = unpack_row(row, packed, scratch, perm)
    prox_sorted_values(xs, perm, block_end, packed.view(np.float64), lam, l1, out, labels, want_labels)


@njit(cache=True, nogil=True)
def prox_sorted_narrow_row(row, packed, scratch, perm, block_end, block_sum, lam, l1, out, labels, want_labels):
    """:func:`prox_sorted_row` from sorted narrow (uint32) keys; ``block_sum``: float64 work.

    If the narrow keys' ties are too disordered to fix cheaply, the row is sorted again
    with wide keys and the radix sort (in ``block_sum`` and ``block_end``).
    """
    xs, done = unpack_narrow_row(row, packed, scratch, perm)
    if not done:
        d = row.shape[0]
        wide, _ = pack_and_radix_sort(row, block_sum.view(np.uint64)[:d], block_end.view(np.uint64)[:d])
        xs = unpack_row(row, wide, scratch, perm)  # block_sum and block_end are free again after this
    prox_sorted_values(xs, perm, block_end, block_sum, lam, l1, out, labels, want_labels)


@njit(cache=True, nogil=True)
def prox_sorted_values(xs, perm, block_end, block_sum, lam, l1, out, labels, want_labels):
    """Prox of one row from its sorted values ``xs`` and sort permutation ``perm``."""
    d = xs.shape[0]
    unit = overflow_guard(xs, lam, l1)
    drift = lam * unit / np.float64(d - 1) if d > 1 else 0.0
    n_merged = pool_blocks(xs, unit, drift, block_end, block_sum)
    expand_blocks(xs, perm[:d], unit, drift, l1 * unit, block_end, block_sum, n_merged, out, labels, want_labels)


@njit(cache=True, nogil=True)
def sort_row(row, keys, scratch, perm):
    """Sort a float32/float64 row with the radix sort: ``(xs, packed)``, ``xs[k] = row[perm[k]]`` ascending.

    ``keys`` and ``scratch`` are uint64 work buffers at least as long as the row; ``xs``
    is a view of one of them and ``packed`` the first ``d`` elements of the other (the
    sorted keys), unused from now on (the caller may reuse it).
    """
    d = row.shape[0]
    packed, free = pack_and_radix_sort(row, keys[:d], scratch[:d])
    return unpack_row(row, packed, free, perm), packed


@njit(cache=True, nogil=True)
def pack_and_radix_sort(row, keys, spare):
    """Packed keys of ``row`` sorted by the radix sort: ``(packed, free)``, the buffer holding them and the other.

    ``keys`` and ``spare`` are uint64 buffers of exactly the row's length.
    """
    if not pack_row(row, keys) and packed_radix_sort(keys, spare):
        return spare, keys
    return keys, spare


@njit(cache=True, nogil=True)
def prox_row(row, lam, l1, out, labels, want_labels, keys, scratch, perm, block_end):
    """Prox of one row (any float32/float64 layout), sorted by the radix sort.

    ``keys``, ``scratch`` (uint64), ``perm`` (uint32) and ``block_end`` (int64) are work
    buffers at least as long as the row.
    """
    if row.shape[0] == 0:
        return
    xs, packed = sort_row(row, keys, scratch, perm)
    prox_sorted_values(xs, perm, block_end, packed.view(np.float64), lam, l1, out, labels, want_labels)


@njit(cache=True, nogil=True)
def prox_chunk(w, lam, l1, out, labels, want_labels, first, stop, keys, scratch, perm, block_end):
    """Prox of rows ``first..stop-1`` of ``w`` (radix sort) in the given work buffers."""
    for r in range(first, stop):
        prox_row(w[r], lam, l1, out[r], labels[r], want_labels, keys, scratch, perm, block_end)


@njit(cache=True, nogil=True)
def pack_rows(w, first, stop, keys):
    """Packed keys of rows ``first..stop-1`` of ``w`` into the rows of the 2-D ``keys``.

    Returns True if every row's keys are already in order.
    """
    in_order = True
    for r in range(first, stop):
        in_order = pack_row(w[r], keys[r - first]) and in_order
    return in_order


@njit(cache=True, nogil=True)
def prox_sorted_rows(w, first, stop, keys, lam, l1, out, labels, want_labels, scratch, perm, block_end):
    """Prox of rows ``first..stop-1`` of ``w`` from the sorted rows of ``keys`` (see :func:`pack_rows`)."""
    for r in range(first, stop):
        prox_sorted_row(w[r], keys[r - first], scratch, perm, block_end, lam, l1, out[r], labels[r], want_labels)


@njit(cache=True, nogil=True)
def pack_narrow_rows(w, first, stop, keys):
    """Narrow keys of rows ``first..stop-1`` of ``w`` into the rows of the 2-D uint32 ``keys``.

    Returns True if every row's keys are already in order.
    """
    in_order = True
    for r in range(first, stop):
        in_order = pack_narrow(w[r], keys[r - first]) and in_order
    return in_order


@njit(cache=True, nogil=True)
def prox_sorted_narrow_rows(
    w, first, stop, keys, lam, l1, out, labels, want_labels, scratch, perm, block_end, block_sum
):
    """Prox of rows ``first..stop-1`` of ``w`` from the sorted rows of the narrow ``keys``."""
    for r in range(first, stop):
        prox_sorted_narrow_row(
            w[r], keys[r - first], scratch, perm, block_end, block_sum, lam, l1, out[r], labels[r], want_labels
        )
