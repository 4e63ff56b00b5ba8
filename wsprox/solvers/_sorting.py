"""Order-preserving radix sorts used by the CPU backend (numba kernels, no validation).

Sorting dominates the cost of the prox, so the CPU backend avoids comparison sorts:
float values are mapped to unsigned integer keys whose unsigned order is the float order
(flip every bit of negatives, set the sign bit of the rest) and sorted by a least
significant digit radix sort. Its cost is linear in ``d`` on every input, which keeps
the prox free of unlucky inputs.

- float32: the 32 key bits and the 32-bit index share one uint64 (key high, index low),
  so a 3-pass sort over the high half carries the permutation for free and breaks ties
  by index (the sort is stable and the indices start in order).
- float64: 64-bit keys with a uint32 payload (the index), 6 passes of 11 bits.

Passes whose digit is the same for every key are skipped (narrow data, small ``d``).
"""

import numpy as np
from numba import njit

_U64_SIGN = np.uint64(0x8000000000000000)
_U64_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_U32_SIGN = np.uint64(0x80000000)
_U32_ALL = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)

#: Rows up to this length use 8-bit digits (smaller histograms), longer ones 11-bit digits.
SMALL_ROW = 4096


@njit(cache=True)
def radix_sort(keys, payload, lo_bit, hi_bit):
    """Stable LSD radix sort of ``keys`` by bits ``[lo_bit, hi_bit)``, moving ``payload`` along.

    ``payload`` may be empty (then nothing is carried). Returns ``(keys, payload)``
    sorted; these may be the input arrays or new ones, and the inputs are clobbered.
    """
    n = keys.shape[0]
    carry = payload.shape[0] > 0
    digit_bits = 8 if n <= SMALL_ROW else 11
    n_digits = (hi_bit - lo_bit + digit_bits - 1) // digit_bits
    radix = 1 << digit_bits
    mask = np.uint64(radix - 1)
    counts = np.zeros((n_digits, radix), np.int64)
    for i in range(n):
        key = keys[i]
        for p in range(n_digits):
            counts[p, (key >> np.uint64(lo_bit + p * digit_bits)) & mask] += 1
    src_k = keys
    src_p = payload
    dst_k = np.empty_like(keys)
    dst_p = np.empty_like(payload)
    for p in range(n_digits):
        shift = np.uint64(lo_bit + p * digit_bits)
        if n == 0 or counts[p, (src_k[0] >> shift) & mask] == n:
            continue  # every key has the same digit here: the pass would not move anything
        total = 0
        for b in range(radix):
            c = counts[p, b]
            counts[p, b] = total
            total += c
        for i in range(n):
            key = src_k[i]
            b = (key >> shift) & mask
            pos = counts[p, b]
            counts[p, b] = pos + 1
            dst_k[pos] = key
            if carry:
                dst_p[pos] = src_p[i]
        src_k, dst_k = dst_k, src_k
        src_p, dst_p = dst_p, src_p
    return src_k, src_p


@njit(cache=True)
def sort_float32(row):
    """Sorted copy of a float32 row and its permutation (uint32): ``xs[k] = row[perm[k]]``.

    Ties keep index order.
    """
    d = row.shape[0]
    xs = np.empty(d, np.float32)
    for i in range(d):
        xs[i] = row[i]
    bits = xs.view(np.uint32)
    keys = np.empty(d, np.uint64)
    for i in range(d):
        b = np.uint64(bits[i])
        if b & _U32_SIGN:
            b = b ^ _U32_ALL
        else:
            b = b | _U32_SIGN
        keys[i] = (b << _SHIFT32) | np.uint64(i)
    keys, _ = radix_sort(keys, np.empty(0, np.uint32), 32, 64)
    perm = np.empty(d, np.uint32)
    for k in range(d):
        key = keys[k]
        b = key >> _SHIFT32
        if b & _U32_SIGN:
            b = b ^ _U32_SIGN
        else:
            b = b ^ _U32_ALL
        bits[k] = np.uint32(b)
        perm[k] = np.uint32(key & _U32_ALL)
    return xs, perm


@njit(cache=True)
def sort_float64(row):
    """Sorted copy of a float64 row and its permutation (uint32): ``xs[k] = row[perm[k]]``.

    Ties keep index order.
    """
    d = row.shape[0]
    xs = np.empty(d, np.float64)
    for i in range(d):
        xs[i] = row[i]
    bits = xs.view(np.uint64)
    perm = np.empty(d, np.uint32)
    for i in range(d):
        b = bits[i]
        if b & _U64_SIGN:
            bits[i] = b ^ _U64_ALL
        else:
            bits[i] = b | _U64_SIGN
        perm[i] = np.uint32(i)
    keys, perm = radix_sort(bits, perm, 0, 64)
    out_bits = keys  # decode in place: the keys become the sorted values
    for k in range(d):
        b = keys[k]
        if b & _U64_SIGN:
            out_bits[k] = b ^ _U64_SIGN
        else:
            out_bits[k] = b ^ _U64_ALL
    return out_bits.view(np.float64), perm
