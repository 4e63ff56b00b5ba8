"""Order-preserving radix sort used by the CPU backend (numba kernels, no validation).

Sorting dominates the cost of the prox, so the CPU backend avoids comparison sorts.
Floats are mapped to unsigned keys whose unsigned order is the float order (flip every
bit of negatives, set the sign bit of the rest; -0.0 sorts just before +0.0). The top 32
bits of a key and the element's 32-bit index share one uint64 (key high, index low), so
a least-significant-digit radix sort over the high half (3 passes of 11 bits, or 4 of 8
bits for short rows) sorts the values and carries the permutation at once, breaking ties
by index (the sort is stable and the indices start in order).

- float32: the 32 key bits are the whole key: one packed sort.
- float64: the packed sort orders by the top 32 of the 64 key bits; runs of elements
  whose top halves agree are then ordered by their low halves (insertion sort for short
  runs, the same packed radix sort on the low halves for long ones).

Every step is linear in ``d`` (radix passes) or in the run lengths, so no input makes the
sort slow. Passes whose digit is the same for every key are skipped, and so is the whole
sort when the keys are already in order (sorted input).

The sorts work in caller-provided buffers (``keys`` and ``scratch``: uint64, ``perm``:
uint32, all of the row's length) so that a batch allocates them once per thread.
"""

import numpy as np
from numba import njit

_U64_SIGN = np.uint64(0x8000000000000000)
_U64_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_U64_HIGH = np.uint64(0xFFFFFFFF00000000)
_U32_SIGN = np.uint64(0x80000000)
_U32_ALL = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

#: Rows up to this length use 8-bit digits (small histograms), longer ones 11-bit digits.
SMALL_ROW = 4096
#: Runs of equal top halves (float64) up to this length are finished by insertion sort.
SHORT_RUN = 32


@njit(cache=True)
def packed_radix_sort(keys, scratch):
    """Stable LSD radix sort of uint64 ``keys`` by their high 32 bits.

    ``scratch`` is a uint64 array at least as long as ``keys``. Returns True if the
    sorted keys ended up in ``scratch[:n]``, False if in ``keys``.
    """
    n = keys.shape[0]
    digit_bits = 8 if n <= SMALL_ROW else 11
    n_digits = (32 + digit_bits - 1) // digit_bits
    radix = 1 << digit_bits
    mask = np.uint64(radix - 1)
    counts = np.zeros((n_digits, radix), np.int64)
    in_order = True
    for i in range(n):
        high = keys[i] >> _SHIFT32
        for p in range(n_digits):
            counts[p, (high >> np.uint64(p * digit_bits)) & mask] += 1
        if i > 0 and keys[i] < keys[i - 1]:
            in_order = False
    if in_order:
        return False  # already sorted (e.g. sorted input): nothing to move
    src = keys
    dst = scratch[:n]
    in_scratch = False
    for p in range(n_digits):
        shift = np.uint64(32 + p * digit_bits)
        if n == 0 or counts[p, (src[0] >> shift) & mask] == n:
            continue  # every key has the same digit here: the pass would move nothing
        total = 0
        for b in range(radix):
            c = counts[p, b]
            counts[p, b] = total
            total += c
        for i in range(n):
            key = src[i]
            b = (key >> shift) & mask
            pos = counts[p, b]
            counts[p, b] = pos + 1
            dst[pos] = key
        src, dst = dst, src
        in_scratch = not in_scratch
    return in_scratch


@njit(cache=True)
def order_key64(bits):
    """Order-preserving uint64 key of the bits of a float64."""
    if bits & _U64_SIGN:
        return bits ^ _U64_ALL
    return bits | _U64_SIGN


@njit(cache=True)
def sort_float32(row, keys, scratch, perm):
    """Sort a float32 row: returns ``(xs, free)`` with ``xs[k] = row[perm[k]]`` ascending.

    ``xs`` is a float32 view of one work buffer and ``free`` is the other one, unused
    from now on (the caller may reuse it).
    """
    d = row.shape[0]
    values = scratch.view(np.float32)[:d]
    for i in range(d):
        values[i] = row[i]
    value_bits = scratch.view(np.uint32)[:d]
    for i in range(d):
        b = np.uint64(value_bits[i])
        if b & _U32_SIGN:
            b = b ^ _U32_ALL
        else:
            b = b | _U32_SIGN
        keys[i] = (b << _SHIFT32) | np.uint64(i)
    if packed_radix_sort(keys, scratch):
        result, free = scratch, keys
    else:
        result, free = keys, scratch
    xs_bits = free.view(np.uint32)[:d]
    for k in range(d):
        key = result[k]
        b = key >> _SHIFT32
        if b & _U32_SIGN:
            b = b ^ _U32_SIGN
        else:
            b = b ^ _U32_ALL
        xs_bits[k] = np.uint32(b)
        perm[k] = np.uint32(key & _U32_ALL)
    return free.view(np.float32)[:d], result


@njit(cache=True)
def sort_float64(row, keys, scratch, perm):
    """Sort a float64 row: returns ``(xs, free)`` with ``xs[k] = row[perm[k]]`` ascending.

    ``xs`` is a float64 view of one work buffer and ``free`` is the other one, unused
    from now on (the caller may reuse it).
    """
    d = row.shape[0]
    values = scratch.view(np.float64)
    for i in range(d):
        values[i] = row[i]
        keys[i] = (order_key64(scratch[i]) & _U64_HIGH) | np.uint64(i)
    if packed_radix_sort(keys, scratch):
        result, free = scratch, keys
    else:
        result, free = keys, scratch
    xs = free.view(np.float64)
    ties = False  # any two neighbours with equal top halves?
    previous = _U64_ALL  # no top half (32 bits) equals this
    for k in range(d):
        key = result[k]
        i = np.uint32(key & _U32_ALL)
        perm[k] = i
        xs[k] = row[i]
        high = key >> _SHIFT32
        ties = ties or high == previous
        previous = high
    if ties:
        _sort_runs_by_low_half(row, xs, free, perm, result)
    return xs, result


@njit(cache=True)
def _sort_runs_by_low_half(row, xs, xs_bits, perm, packed):
    """Order each run of equal top key halves by the low halves (then by index).

    ``packed`` holds the sorted packed keys (top halves high); a long run reuses its
    own stretch of it as work space once the run has been found.
    """
    d = xs.shape[0]
    start = 0
    while start < d:
        high = packed[start] >> _SHIFT32
        end = start + 1
        while end < d and (packed[end] >> _SHIFT32) == high:
            end += 1
        n = end - start
        if n > SHORT_RUN:
            run = packed[start:end]
            for k in range(start, end):
                run[k - start] = ((order_key64(xs_bits[k]) & _U32_ALL) << _SHIFT32) | np.uint64(perm[k])
            tmp = np.empty(n, np.uint64)
            result = tmp if packed_radix_sort(run, tmp) else run
            for k in range(start, end):
                i = np.uint32(result[k - start] & _U32_ALL)
                perm[k] = i
                xs[k] = row[i]
        elif n > 1:
            for k in range(start + 1, end):  # insertion sort by (low key half, index)
                key = order_key64(xs_bits[k])
                idx = perm[k]
                value = xs[k]
                j = k - 1
                while j >= start:
                    other = order_key64(xs_bits[j])
                    if other < key or (other == key and perm[j] < idx):
                        break
                    xs[j + 1] = xs[j]
                    perm[j + 1] = perm[j]
                    j -= 1
                xs[j + 1] = value
                perm[j + 1] = idx
        start = end
