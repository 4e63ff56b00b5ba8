"""Sort keys and the radix sort used by the CPU backend (numba kernels, no validation).

Floats are mapped to unsigned keys whose unsigned order is the float order (flip every
bit of negatives, set the sign bit of the rest; -0.0 sorts just before +0.0).

**Packed keys.** The top 32 bits of a key and the element's 32-bit index share one
uint64 (key high, index low). Sorting these distinct integers sorts the values and
carries the permutation at once, ties broken by index, whatever (correct) sort is used:
the backend's own least-significant-digit radix sort below (3 passes of 11 bits over the
high half, or 4 of 8 bits for short rows), or numpy's ``ndarray.sort``
(:mod:`._sort_engine` picks one).

- float32: the 32 key bits are the whole key.
- float64: the packed keys order by the top 32 of the 64 key bits; runs of elements
  whose top halves agree are then ordered by their low halves (insertion sort for short
  runs, the same packed radix sort on the low halves for long ones).

**Narrow keys** (numpy's sort, short rows): a uint32 holds a coarse key of ``32 - b``
bits above a ``b``-bit index, ``2**b >= d``; numpy sorts these about twice as fast. The
coarse key maps the row's value range linearly onto its bits (see :func:`pack_narrow`).
The rare elements that share their coarse key are then put in place by insertion on
the full key, within a budget of ``4 d + 64`` moves; a row that would need more (a
long run of near-equal values in bad order, as when a few outliers stretch the range)
is sorted again with packed keys.

Every step of the radix sort is linear in ``d`` (radix passes) or in the run lengths, so
no input makes it slow; numpy's sort is an introsort, ``O(d log d)`` on every input.
Passes whose digit is the same for every key are skipped, and so is the whole sort when
the keys are already in order (sorted input), which packing reports.

The functions work in caller-provided buffers (uint64 keys and scratch, a uint32
permutation, all of the row's length) so that a batch allocates them once per thread.
"""

import numpy as np
from numba import njit
from numba.extending import overload

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
#: Narrow keys map a row's range linearly only if it is at least this wide (so that the
#: scale, at most ``2**31`` over the range, stays finite); narrower ranges (subnormal
#: spreads) share one coarse key.
MIN_LINEAR_SPAN = 1e-290
#: ... and if half the range is below this (a quarter of the largest float64), so that
#: the range itself is finite.
MAX_LINEAR_SPAN = 4e307


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def order_key64(bits):
    """Order-preserving uint64 key of the bits of a float64."""
    if bits & _U64_SIGN:
        return bits ^ _U64_ALL
    return bits | _U64_SIGN


@njit(cache=True, nogil=True)
def pack_float32(row, keys):
    """Fill ``keys[:d]`` with the packed keys of a float32 row (whole 32-bit key high, index low).

    Returns True if the keys came out in ascending order (nothing to sort).
    """
    in_order = True
    values = keys.view(np.float32)  # read each value's bits through its own key slot
    value_bits = keys.view(np.uint32)
    for i in range(row.shape[0]):
        values[2 * i] = row[i]
        keys[i] = (top_key32(value_bits[2 * i]) << _SHIFT32) | np.uint64(i)
        in_order = in_order and (i == 0 or keys[i] > keys[i - 1])
    return in_order


@njit(cache=True, nogil=True)
def pack_float64(row, keys):
    """Fill ``keys[:d]`` with the packed keys of a float64 row (top 32 key bits high, index low).

    Returns True if the keys came out in ascending order (nothing to sort).
    """
    in_order = True
    values = keys.view(np.float64)  # read each value's bits through its own key slot
    for i in range(row.shape[0]):
        values[i] = row[i]
        keys[i] = (order_key64(keys[i]) & _U64_HIGH) | np.uint64(i)
        in_order = in_order and (i == 0 or keys[i] > keys[i - 1])
    return in_order


@njit(cache=True, nogil=True)
def unpack_float32(packed, xs, perm):
    """From sorted packed keys of a float32 row: sorted values ``xs`` and the permutation ``perm``."""
    xs_bits = xs.view(np.uint32)
    for k in range(packed.shape[0]):
        key = packed[k]
        b = key >> _SHIFT32
        if b & _U32_SIGN:
            b = b ^ _U32_SIGN
        else:
            b = b ^ _U32_ALL
        xs_bits[k] = np.uint32(b)
        perm[k] = np.uint32(key & _U32_ALL)


@njit(cache=True, nogil=True)
def unpack_float64(row, packed, xs, perm):
    """From sorted packed keys of a float64 row: sorted ``xs`` and ``perm``, ties refined.

    Elements whose top key halves tie are put in order of their low halves (then of
    their index); ``packed`` serves as work space for that and is clobbered.
    """
    d = xs.shape[0]
    ties = False  # any two neighbours with equal top halves?
    previous = _U64_ALL  # no top half (32 bits) equals this
    for k in range(d):
        key = packed[k]
        i = np.uint32(key & _U32_ALL)
        perm[k] = i
        xs[k] = row[i]
        high = key >> _SHIFT32
        ties = ties or high == previous
        previous = high
    if ties:
        _sort_runs_by_low_half(row, xs, xs.view(np.uint64), perm, packed)


@njit(cache=True, nogil=True)
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


# --------------------------------------------------------------------------------------
# Narrow (32-bit) keys for short rows: a coarse, row-adaptive key above the index bits.
# --------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def index_bits(d):
    """Bits that hold an index below ``d`` in a narrow key (at least 1)."""
    b = 1
    while (1 << b) < d:
        b += 1
    return b


def full_key(bits):
    """The order-preserving key of a float's bits (uint32: float32's 32-bit key, uint64: float64's)."""
    if isinstance(bits, np.uint32):
        return top_key32(bits)
    return order_key64(bits)


@overload(full_key)
def _full_key_overload(bits):
    if bits.bitwidth == 32:
        return lambda bits: top_key32(bits)
    return lambda bits: order_key64(bits)


def top_key32(bits):
    """The top 32 bits of the order-preserving key of a float's bits (uint32: float32, uint64: float64)."""
    if isinstance(bits, np.uint32):
        b = np.uint64(bits)
        return b ^ _U32_ALL if b & _U32_SIGN else b | _U32_SIGN
    return order_key64(bits) >> _SHIFT32


@overload(top_key32)
def _top_key32_overload(bits):
    if bits.bitwidth == 32:

        def key32(bits):
            b = np.uint64(bits)
            if b & _U32_SIGN:
                return b ^ _U32_ALL
            return b | _U32_SIGN

        return key32
    return lambda bits: order_key64(bits) >> _SHIFT32


@njit(cache=True, nogil=True)
def value_range(row):
    """``(min, max)`` of a non-empty float row, as float64.

    Four independent running minima and maxima, so that the loop is not one chain of
    dependent comparisons (about 4x faster than a single pair).
    """
    d = row.shape[0]
    low0 = low1 = low2 = low3 = high0 = high1 = high2 = high3 = np.float64(row[0])
    stop = d - d % 4
    for i in range(0, stop, 4):
        a = np.float64(row[i])
        b = np.float64(row[i + 1])
        c = np.float64(row[i + 2])
        e = np.float64(row[i + 3])
        low0, high0 = min(low0, a), max(high0, a)
        low1, high1 = min(low1, b), max(high1, b)
        low2, high2 = min(low2, c), max(high2, c)
        low3, high3 = min(low3, e), max(high3, e)
    for i in range(stop, d):
        a = np.float64(row[i])
        low0, high0 = min(low0, a), max(high0, a)
    return min(min(low0, low1), min(low2, low3)), max(max(high0, high1), max(high2, high3))


@njit(cache=True, nogil=True)
def pack_narrow(row, keys):
    """Narrow (uint32) keys of a short, finite float32 or float64 row into ``keys[:d]``.

    A key is a coarse key ``q`` in its top ``32 - b`` bits above the element's index in
    its low ``b = index_bits(d)`` bits. ``q`` maps the row's range ``[lo, hi]`` linearly
    onto ``0 .. 2**(32 - b) - 1``: ``q = floor(min((x - lo) s, 2**(32 - b) - 1))`` with
    ``s = (2**(32 - b) - 1) / (hi - lo)``. Each rounded step (subtract, multiply, cap,
    floor) is monotone, so ``q`` never decreases with ``x``: sorting the keys orders
    the row by ``q``, then by index, and only elements of equal ``q`` may still be out of
    order (:func:`unpack_narrow` fixes those). Unlike the float's own top bits, ``q``
    spends no bits on exponents the row does not use, so ties are rare (about 2e-4 of
    neighbours in a Gaussian row of 1000, against 5e-2 for float64's top 22 bits).

    A row whose range is zero (every value equal; -0.0 and +0.0 may mix) gets
    ``q = 0`` for -0.0 and 1 otherwise, and one whose range is near overflow (half of it
    at least ``MAX_LINEAR_SPAN``), or narrower than ``MIN_LINEAR_SPAN`` (so that ``s``
    would overflow), gets ``q = 0`` throughout
    (one long run: the caller falls back).
    Returns True if the keys came out in ascending order (nothing to sort).
    """
    d = row.shape[0]
    b = index_bits(d)
    lo, hi = value_range(row)
    cap = np.float64((1 << (32 - b)) - 1)
    # Linear only where neither the range nor the scale overflows (no inf * 0 = NaN); the
    # test halves first, so that it overflows nowhere itself.
    half_span = hi * 0.5 - lo * 0.5
    linear = 0.5 * MIN_LINEAR_SPAN <= half_span < MAX_LINEAR_SPAN
    scale = cap / (hi - lo) if linear else 0.0
    shift = np.uint32(b)
    in_order = True
    previous = np.uint32(0)
    for i in range(d):
        v = np.float64(row[i])
        if linear:
            q = np.uint32(min((v - lo) * scale, cap))
        elif hi == lo:
            q = np.uint32(not np.signbit(v))
        else:
            q = np.uint32(0)
        key = (q << shift) | np.uint32(i)
        keys[i] = key
        in_order &= (i == 0) | (key > previous)
        previous = key
    return in_order


@njit(cache=True, nogil=True)
def unpack_narrow(row, packed, xs, xs_bits, perm):
    """Sorted ``xs`` and ``perm`` from sorted narrow keys, ordered exactly (ties by index).

    ``xs_bits`` views ``xs`` as unsigned integers of its width. The narrow keys order
    the row by coarse key, then index; a first pass gathers the values in that order
    and notes whether any two neighbours share a coarse key. Only then does a second
    pass (:func:`_order_coarse_runs`) order those runs by full key. Returns True when
    done, False if the second pass gave up (the caller sorts the row another way).
    """
    d = xs.shape[0]
    b = index_bits(d)
    mask = np.uint32((1 << b) - 1)
    shift = np.uint32(b)
    ties = False
    previous = np.uint32(0xFFFFFFFF)  # no coarse key (at most 31 bits) equals this
    for k in range(d):
        key = packed[k]
        i = key & mask
        perm[k] = i
        xs[k] = row[i]
        coarse = key >> shift
        ties |= coarse == previous
        previous = coarse
    if not ties:
        return True
    return _order_coarse_runs(packed, shift, xs, xs_bits, perm)


@njit(cache=True, nogil=True)
def _order_coarse_runs(packed, shift, xs, xs_bits, perm):
    """Order each run of equal coarse keys of the gathered ``xs``/``perm`` by full key.

    Each element that shares its coarse key with its predecessor is moved back by
    insertion to its place by full key; elements of equal full key (equal values)
    keep their index order. Insertion stops after ``4 d + 64`` moves in all (a long run
    of near-equal values in bad order): then False is returned, so the work stays linear.
    """
    d = xs.shape[0]
    budget = 4 * d + 64
    run_start = 0
    previous = packed[0] >> shift
    for k in range(1, d):
        coarse = packed[k] >> shift
        if coarse != previous:
            run_start = k
            previous = coarse
            continue
        value = xs[k]
        i = perm[k]
        full = full_key(xs_bits[k])
        j = k
        while j > run_start and full_key(xs_bits[j - 1]) > full:
            j -= 1
        if j < k:
            budget -= k - j
            if budget < 0:
                return False
            for m in range(k, j, -1):
                xs[m] = xs[m - 1]
                perm[m] = perm[m - 1]
            xs[j] = value
            perm[j] = i
    return True
