"""numba.cuda kernels of the ``cuda`` backend (no validation, no dispatch).

They implement, launch for launch, the algorithm of :mod:`wsprox.solvers.cuda_prototype`
(read its docstring for the mathematics, the data layout and the depth/work bounds):

1. :func:`k_tile` -- one thread block per tile: the block stages the tile's ``x - ref``
   (``ref`` the tile's middle element) in shared memory (coalesced loads, float64); each
   thread runs a sequential PAVA on a chunk
   of ``CHUNK`` consecutive elements, with its stack in shared memory; the chunk hulls are
   merged in a bridge tree inside the block (the same device functions as stage 2, on
   shared arrays); the tile writes only its hull vertices.
2. :func:`k_scan_offsets` -- one thread block per row: compensated (double-double)
   scan of the tile totals into the tile offsets, outward from the median's tile (two
   parallel block scans).
3. :func:`k_bridge` / :func:`k_update` -- one launch pair per level of the bridge tree
   (``ceil(log2 n_tiles)`` levels): one thread per merging pair finds the bridge by the
   nested binary search, then one thread per tile moves its ``L``/``R`` survivor pointers;
   the levels with few pairs run together in one launch, :func:`k_levels` (one block per
   row, a barrier between phases), which also does the scan of step 2 when it runs all
   the levels (rows of up to ``2 * FUSED_LEVEL_PAIRS`` tiles: steps 2 and 3 in one launch).
4. :func:`k_label_flags` (only for cluster ids) -- one thread block per tile flags and
   counts the block starts that open a new cluster id (each thread a run of vertices, a
   block scan between them), then :func:`k_scan_fields` over tiles.
5. :func:`k_expand` -- one thread per element: block mean in float64 (short blocks and
   blocks of equal weights summed directly from the sorted weights), rounding guard,
   soft threshold, cast, then either the scatter through the sort permutation or a
   store in sorted order followed by the partitioned unsort of
   :func:`get_unsort_kernels` (destinations grouped into L2-sized windows first); for
   cluster ids, :func:`k_expand_labels` (one thread per element) scatters each
   element's id.

Kernels are built by :func:`get_kernels` for a given tile size, chunk size, threads per block and
longest directly summed block
(shared-array sizes must be compile-time constants) and cached.
"""

from __future__ import annotations

import functools

from numba import cuda, float32, float64, int32, int64

from ._compensated import dd_add as _dd_add
from ._scaling import overflow_unit as _overflow_unit

__all__ = ["get_kernels", "get_scan_kernel", "get_unsort_kernels", "k_nonfinite", "soft_cast"]

# Per-tile state of a chunk of rows, packed into two arrays so that each launch takes few
# arguments (numba's host cost grows with every array argument):
# ``ti``, int64 (rows, TILE_INT_FIELDS, n_tiles): vertex count, survivor pointers L and R,
# and the bridge (p, q) of each merging pair of the current level (indexed by pair);
VCNT, LEFT, RIGHT, BRIDGE_P, BRIDGE_Q = 0, 1, 2, 3, 4
TILE_INT_FIELDS = 5
# ``tf``, float64 (rows, TILE_FLOAT_FIELDS, n_tiles): tile total (relative to the row's
# centre c), its compensated scan outward from the median's tile (the tile offsets, high and low parts), new-id
# counts and their scan (cluster ids), the row's centre c at [.., 0], and per tile its
# reference (its middle element) minus c and its total relative to the reference (the
# tile's slot sums ``vcum`` are relative to its reference), and the row's overflow unit at
# [.., 0] (every value, sum, centre and ``lam`` of the hull is in units of ``1 / unit``).
TOT, OFF, OFF_LO, LCNT, LBASE, CENTER, REFC, TREL, UNIT = 0, 1, 2, 3, 4, 5, 6, 7, 8
TILE_FLOAT_FIELDS = 9

dd_add = cuda.jit(device=True, inline="always")(_dd_add)
overflow_unit = cuda.jit(device=True, inline="always")(_overflow_unit)


@cuda.jit
def k_nonfinite(w, status):
    """Count non-finite entries of the 2-D ``w`` into ``status[0]``, the first one's flat index into ``status[1]``."""
    i = cuda.grid(1)
    n, d = w.shape
    if i < n * d:
        v = w[i // d, i % d]
        if not (v - v == 0.0):  # NaN and +-inf give NaN
            cuda.atomic.add(status, 0, 1)
            cuda.atomic.min(status, 1, i)


@cuda.jit(device=True)
def soft_cast(m, l1, is32):
    """Soft-threshold a float64 block value by ``l1`` (zeros are +0.0), rounded to float32 if ``is32``."""
    if l1 > 0.0:
        if m > l1:
            m = m - l1
        elif m < -l1:
            m = m + l1
        else:
            m = 0.0
    if is32:
        return float64(float32(m))
    return m


@cuda.jit
def k_soft_threshold(w, l1, out):
    """``out = sign(w) max(|w| - l1, 0)`` of the 2-D ``w``, in float64 (zeros +0.0 when ``l1 > 0``; 1-D grid)."""
    i = cuda.grid(1)
    n, d = w.shape
    if i < n * d:
        r = i // d
        k = i % d
        out[r, k] = soft_cast(float64(w[r, k]), l1, False)


@cuda.jit
def k_run_starts(xs, flags):
    """``flags[r, k] = 1.0`` where the sorted row ``xs[r]`` changes value at ``k > 0``, else 0.0 (1-D grid)."""
    i = cuda.grid(1)
    n, d = xs.shape
    if i < n * d:
        r = i // d
        k = i % d
        flags[r, k] = 1.0 if k > 0 and xs[r, k] != xs[r, k - 1] else 0.0


@cuda.jit
def k_scatter_run_labels(perm, starts, flags, labels):
    """``labels[r, perm[r, k]]``: the number of value changes up to ``k`` (inclusive) in sorted row ``r``."""
    i = cuda.grid(1)
    n, d = perm.shape
    if i < n * d:
        r = i // d
        k = i % d
        labels[r, perm[r, k]] = int64(starts[r, k] + flags[r, k])


@cuda.jit(device=True)
def block_exclusive_scan(part, v, tid, n, zero):
    """Exclusive prefix sums of the values ``v`` of threads ``0 .. n-1``, by the whole block.

    Every thread of the block must call it (it has barriers); ``n <= blockDim.x`` and
    ``part`` is a shared array of at least ``n`` entries of ``v``'s type, free again on
    return. Hillis-Steele in ``ceil(log2 n)`` steps (a fixed summation tree). Returns
    ``(prefix, total)``: the sum of the values of threads ``0 .. tid-1`` (``zero`` for
    ``tid >= n``) and of all ``n`` values.
    """
    acc = v if tid < n else zero
    step = 1
    while step < n:
        cuda.syncthreads()
        if tid < n:
            part[tid] = acc
        cuda.syncthreads()
        if tid < n and tid >= step:
            acc = part[tid - step] + acc
        step *= 2
    cuda.syncthreads()
    if tid < n:
        part[tid] = acc
    cuda.syncthreads()
    total = part[n - 1]
    prefix = zero
    if tid > 0 and tid < n:
        prefix = part[tid - 1]
    cuda.syncthreads()
    return prefix, total


@cuda.jit(device=True)
def thread_run(n):
    """This thread's run ``[lo, hi)`` when ``0 .. n-1`` is cut into ``blockDim.x`` runs of ``ceil(n / blockDim.x)``."""
    nthr = cuda.blockDim.x
    run = (n + nthr - 1) // nthr
    lo = min(cuda.threadIdx.x * run, n)
    return lo, min(lo + run, n)


@cuda.jit(device=True)
def row_exclusive_scan(src, dst, part):
    """Exclusive float64 scan of the 1-D ``src`` into ``dst`` by the whole block.

    Each thread sums a contiguous run of ``ceil(n / blockDim.x)`` entries, the run totals
    are scanned by :func:`block_exclusive_scan` (``part``: shared, ``blockDim.x`` float64),
    and each thread writes its run. ``src`` and ``dst`` may be the same array.
    """
    tid = cuda.threadIdx.x
    lo, hi = thread_run(src.shape[0])
    acc = 0.0
    for i in range(lo, hi):
        acc += src[i]
    acc, _ = block_exclusive_scan(part, acc, tid, cuda.blockDim.x, 0.0)
    for i in range(lo, hi):
        v = src[i]
        dst[i] = acc
        acc += v


@cuda.jit(device=True)
def block_exclusive_scan_dd(part_hi, part_lo, v_hi, v_lo, tid, n):
    """:func:`block_exclusive_scan` of double-double values ``v_hi + v_lo``: ``(prefix_hi, prefix_lo)``.

    ``part_hi``/``part_lo``: shared float64 arrays of at least ``n`` entries. The same
    Hillis-Steele tree, each step a :func:`wsprox.solvers._compensated.dd_add`.
    """
    acc_hi = v_hi if tid < n else 0.0
    acc_lo = v_lo if tid < n else 0.0
    step = 1
    while step < n:
        cuda.syncthreads()
        if tid < n:
            part_hi[tid] = acc_hi
            part_lo[tid] = acc_lo
        cuda.syncthreads()
        if tid < n and tid >= step:
            acc_hi, acc_lo = dd_add(part_hi[tid - step], part_lo[tid - step], acc_hi, acc_lo)
        step *= 2
    cuda.syncthreads()
    if tid < n:
        part_hi[tid] = acc_hi
        part_lo[tid] = acc_lo
    cuda.syncthreads()
    prefix_hi = 0.0
    prefix_lo = 0.0
    if tid > 0 and tid < n:
        prefix_hi = part_hi[tid - 1]
        prefix_lo = part_lo[tid - 1]
    cuda.syncthreads()
    return prefix_hi, prefix_lo


@cuda.jit(device=True)
def row_outward_scan_dd(src, origin, dst_hi, dst_lo, part_hi, part_lo):
    """Compensated (double-double) scan of the float64 ``src`` outward from index ``origin``.

    ``dst[t]`` is the sum of ``src[origin .. t-1]`` for ``t >= origin`` and minus the sum
    of ``src[t .. origin-1]`` for ``t < origin`` (as ``dst_hi + dst_lo``), so that
    ``dst[b] - dst[a]`` is the sum of ``src[a .. b-1]`` for every ``a <= b``. Each thread
    sums a contiguous run (:func:`thread_run`) of each side; the forward run totals are
    scanned by :func:`block_exclusive_scan_dd` in thread order, the backward ones in
    reverse thread order, and every addition is a double-double one. With the tile totals
    relative to the row's median and ``origin`` the median's tile, each side adds terms of
    one sign, so the difference of two outputs is the sum between them up to about one
    rounding of the largest term between them and the median, however large the far ends
    of the row are (see ``cuda_prototype._scan_offsets``). ``part_hi``/``part_lo``:
    shared, ``blockDim.x`` float64 each.
    """
    tid = cuda.threadIdx.x
    nthr = cuda.blockDim.x
    lo, hi = thread_run(src.shape[0])
    f_hi = 0.0
    f_lo = 0.0
    for i in range(max(lo, origin), hi):
        f_hi, f_lo = dd_add(f_hi, f_lo, src[i], 0.0)
    b_hi = 0.0
    b_lo = 0.0
    for i in range(lo, min(hi, origin)):
        b_hi, b_lo = dd_add(b_hi, b_lo, src[i], 0.0)
    f_hi, f_lo = block_exclusive_scan_dd(part_hi, part_lo, f_hi, f_lo, tid, nthr)
    b_hi, b_lo = block_exclusive_scan_dd(part_hi, part_lo, b_hi, b_lo, nthr - 1 - tid, nthr)  # from the right
    for i in range(max(lo, origin), hi):
        v = src[i]
        dst_hi[i] = f_hi
        dst_lo[i] = f_lo
        f_hi, f_lo = dd_add(f_hi, f_lo, v, 0.0)
    for i in range(min(hi, origin) - 1, lo - 1, -1):
        b_hi, b_lo = dd_add(b_hi, b_lo, src[i], 0.0)
        dst_hi[i] = -b_hi
        dst_lo[i] = -b_lo


@functools.cache
def get_scan_kernel(threads_per_block: int):
    """Compile (lazily) and return ``k_scan`` for ``threads_per_block`` threads per block.

    ``k_scan(src, dst)``: exclusive float64 scan along axis 1, one thread block per row.
    Shared by the ``cuda`` and ``cuda-imminent`` backends.
    """
    TPB = int(threads_per_block)

    @cuda.jit
    def k_scan(src, dst):
        """Exclusive float64 scan along axis 1 (grid = n_rows blocks of TPB threads)."""
        part = cuda.shared.array(TPB, float64)
        r = cuda.blockIdx.x
        row_exclusive_scan(src[r], dst[r], part)

    return k_scan


@functools.cache
def _hull_functions(S: int, tile_refs: bool):
    """Device functions on a hull stored in slots of stride ``S`` (``S`` = elements per tile + 1).

    The same functions serve the tiles of a row (global arrays, ``tile_refs``) and the
    chunks of a tile (shared arrays inside :func:`get_kernels`' ``k_tile``). They differ
    only in :func:`span`. For chunks, ``off`` is the 1-D array of chunk offsets and the
    sums are prefix differences. For tiles, ``off`` is the row's ``tf[r]`` (fields x
    tiles): each slot sum is relative to its tile's reference, so a range's sum is taken
    from the reference-relative sums of its end tiles, ``n (ref - c)`` for each, and the
    compensated offsets for the whole tiles between (see ``cuda_prototype._Row.span``).
    Returns the tuple ``(canon, span, pool, pred_end, prev_vertex, alive_edge,
    pair_bridge, take_bridge)``.
    """
    T = S - 1

    @cuda.jit(device=True)
    def canon(vcnt, nt, slot):
        t = slot // S
        if slot - t * S == vcnt[t] - 1 and t < nt - 1:
            return (t + 1) * S
        return slot

    if tile_refs:

        @cuda.jit(device=True)
        def span(vpos, vcum, off, a, b):
            ta = a // S
            tb = b // S
            if ta == tb:
                return (vcum[b] - vcum[a]) + float64(vpos[b] - vpos[a]) * off[REFC, ta]
            tail = (off[TREL, ta] - vcum[a]) + float64((ta + 1) * T - vpos[a]) * off[REFC, ta]
            head = vcum[b] + float64(vpos[b] - tb * T) * off[REFC, tb]
            t1 = ta + 1
            return (off[OFF, tb] - off[OFF, t1]) + (((off[OFF_LO, tb] - off[OFF_LO, t1]) + tail) + head)

    else:

        @cuda.jit(device=True)
        def span(vpos, vcum, off, a, b):
            ta = a // S
            tb = b // S
            if ta == tb:
                return vcum[b] - vcum[a]
            return (off[tb] - off[ta]) + (vcum[b] - vcum[a])

    @cuda.jit(device=True)
    def pool(vpos, vcum, off, scale, lam, a, m, b):
        n_l = float64(vpos[m] - vpos[a])
        n_r = float64(vpos[b] - vpos[m])
        s_l = span(vpos, vcum, off, a, m)
        s_r = span(vpos, vcum, off, m, b)
        return scale * (s_r * n_l - s_l * n_r) <= lam * n_l * n_r * (n_l + n_r)

    @cuda.jit(device=True)
    def end_slot(vcnt, nt, g1):
        if g1 < nt:
            return g1 * S
        return (nt - 1) * S + vcnt[nt - 1] - 1

    @cuda.jit(device=True)
    def pred_end(vcnt, L, R, g1):
        t = g1 - 1
        if R[t] // S == t:
            return t * S + vcnt[t] - 2
        return L[t]

    @cuda.jit(device=True)
    def first_edge_tangent(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, g1, q):
        """Tangent point of ``q`` on the hull of tiles [g0, g1): first edge (u, w) with pool(u, w, q)."""
        lo = g0
        hi = g1
        while lo < hi:
            mid = (lo + hi) // 2
            if pool(vpos, vcum, off, scale, lam, L[mid], R[mid], q):
                hi = mid
            else:
                lo = mid + 1
        ts = lo
        if ts == g0:
            return L[g0]
        tp = ts - 1
        lnext = L[ts] if ts < g1 else end_slot(vcnt, nt, g1)
        base = tp * S
        if R[tp] // S != tp:
            return lnext
        i_lo = R[tp] - base
        i_end = lnext - base if lnext // S == tp else vcnt[tp] - 1
        i_hi = i_end
        while i_lo < i_hi:
            mid = (i_lo + i_hi) // 2
            if pool(vpos, vcum, off, scale, lam, base + mid, canon(vcnt, nt, base + mid + 1), q):
                i_hi = mid
            else:
                i_lo = mid + 1
        if i_lo == i_end:
            return lnext
        return base + i_lo

    @cuda.jit(device=True)
    def bridge_pred(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, u, w):
        p = first_edge_tangent(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, u)
        return not pool(vpos, vcum, off, scale, lam, p, u, w)

    @cuda.jit(device=True)
    def first_edge_bridge(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, g2):
        """The bridge's right point: first B-hull edge (u, w) that the tangent from u supports."""
        lo = gm
        hi = g2
        while lo < hi:
            mid = (lo + hi) // 2
            if bridge_pred(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, L[mid], R[mid]):
                hi = mid
            else:
                lo = mid + 1
        ts = lo
        if ts == gm:
            return L[gm]
        tp = ts - 1
        lnext = L[ts] if ts < g2 else end_slot(vcnt, nt, g2)
        base = tp * S
        if R[tp] // S != tp:
            return lnext
        i_lo = R[tp] - base
        i_end = lnext - base if lnext // S == tp else vcnt[tp] - 1
        i_hi = i_end
        while i_lo < i_hi:
            mid = (i_lo + i_hi) // 2
            if bridge_pred(
                vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, base + mid, canon(vcnt, nt, base + mid + 1)
            ):
                i_hi = mid
            else:
                i_lo = mid + 1
        if i_lo == i_end:
            return lnext
        return base + i_lo

    @cuda.jit(device=True)
    def prev_vertex(vcnt, L, R, u):
        t = u // S
        if u == t * S:
            return pred_end(vcnt, L, R, t)
        if u == R[t]:
            return L[t]
        return u - 1

    @cuda.jit(device=True)
    def alive_edge(vcnt, L, R, nt, t, i):
        """End slot of the final-hull edge from vertex ``i`` of tile ``t``; -1 if that vertex was removed."""
        u = t * S + i
        if i == 0:
            if L[t] == u:
                return R[t]
            return -1
        if not (R[t] // S == t and R[t] <= u):
            return -1
        if t + 1 < nt:
            last = L[t + 1]
            if not ((last // S == t and u <= last) or last // S == t + 1):
                return -1
            if u == last:
                return R[t + 1]
        return canon(vcnt, nt, u + 1)

    @cuda.jit(device=True)
    def pair_bridge(level, i, nt, scale, lam, vcnt, vpos, vcum, off, L, R):
        """Bridge ``(p, q)`` merging the groups of pair ``i`` at ``level``; ``(-1, -1)``: no right group, or convex."""
        h = 1 << level
        g0 = i * 2 * h
        gm = g0 + h
        if gm >= nt:
            return -1, -1
        g2 = min(g0 + 2 * h, nt)
        if not pool(vpos, vcum, off, scale, lam, pred_end(vcnt, L, R, gm), gm * S, R[gm]):
            return -1, -1
        q = first_edge_bridge(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, g2)
        p = first_edge_tangent(vcnt, vpos, vcum, off, L, R, nt, scale, lam, g0, gm, q)
        return p, q

    @cuda.jit(device=True)
    def take_bridge(level, t, vpos, bp, bq, n_pairs, L, R):
        """Tile ``t`` takes its pair's bridge ``(bp, bq)`` if the bridge spans the tile's start."""
        pair = t // (2 << level)
        if pair >= n_pairs:
            return
        p = bp[pair]
        if p < 0:
            return
        q = bq[pair]
        b = t * (S - 1)
        if vpos[p] <= b and b < vpos[q]:
            L[t] = p
            R[t] = q

    return (canon, span, pool, pred_end, prev_vertex, alive_edge, pair_bridge, take_bridge)


@functools.cache
def get_kernels(tile: int, chunk: int, threads_per_block: int, local: int):
    """Compile (lazily) and return the kernels for ``tile`` elements per tile, ``chunk`` per thread.

    Blocks of at most ``local`` elements (and blocks of equal weights) get their mean from
    a direct sum of their sorted weights (see :func:`wsprox.solvers.cuda_prototype._mean`).

    Returns
    -------
    types.SimpleNamespace
        ``k_tile, k_scan, k_scan_offsets, k_scan_fields, k_bridge, k_update, k_levels, k_label_flags,
        k_expand, k_expand_labels`` and the
        constants ``TILE``, ``SLOTS`` (= TILE + 1), ``CHUNK``, ``NC`` (threads of a
        ``k_tile`` block, ``ceil(TILE / CHUNK)``), ``TPB`` and ``LOCAL``.
    """
    import types

    TILE = int(tile)
    S = TILE + 1
    CHUNK = min(int(chunk), TILE)
    SC = CHUNK + 1
    NC = -(-TILE // CHUNK)
    CSLOTS = NC * SC
    TPB = int(threads_per_block)
    LOCAL = int(local)

    (canon, span, pool, pred_end, prev_vertex, alive_edge, pair_bridge, take_bridge) = _hull_functions(S, True)
    (c_canon, _, _, _, _, c_alive_edge, c_pair_bridge, c_take_bridge) = _hull_functions(SC, False)

    @cuda.jit(device=True)
    def block_mean(xs, vpos, vcum, off, d, scale, lam, center, u, w):
        """Mean of ``z`` over the block ``(u, w)``; ``xs`` the sorted row, ``off`` the row's ``tf[r]``.

        A block of at most ``LOCAL`` elements, or of equal weights, is summed from ``xs``
        relative to its middle element; longer ones take the range sum of the tile sums.
        """
        a = vpos[u]
        b = vpos[w]
        n = b - a
        unit = off[UNIT, 0]
        first = float64(xs[a]) * unit
        last = float64(xs[b - 1]) * unit
        if n <= LOCAL or first == last:
            ref = float64(xs[(a + b) // 2]) * unit
            s = 0.0
            if first != last:
                for j in range(a, b):
                    s += float64(xs[j]) * unit - ref
            return s / float64(n) + (lam / scale) * float64(d - a - b) + ref
        # one formula whatever the tiling: exact sums give the same bits for every TILE/CHUNK
        return span(vpos, vcum, off, u, w) / float64(n) + lam * float64(d - a - b) / scale + center

    @cuda.jit(device=True)
    def block_value(xs, vcnt, vpos, vcum, off, L, R, d, scale, lam, center, l1, is32, u, w):
        """Output value of the block ``(u, w)``; ``lam`` and ``center`` in units of ``1 / off[UNIT, 0]``."""
        m = block_mean(xs, vpos, vcum, off, d, scale, lam, center, u, w)
        if vpos[u] > 0:
            pu = prev_vertex(vcnt, L, R, u)
            mp = block_mean(xs, vpos, vcum, off, d, scale, lam, center, pu, u)
            if m < mp:
                m = mp
        return soft_cast(m / off[UNIT, 0], l1, is32)

    # ------------------------------------------------------------------ kernels
    @cuda.jit
    def k_tile(xs, lam, ti, tf, vpos, vcum):
        """Stage 1: the hull of every tile (grid = (n_tiles, n_rows), NC threads per block).

        Thread ``c`` runs a sequential PAVA on chunk ``c`` (``CHUNK`` elements staged in
        shared memory); the chunk hulls are merged by the bridge tree of
        ``_hull_functions(SC)`` on shared arrays (``ceil(log2 NC)`` levels); the tile
        writes its hull vertices (position, float64 sum of ``x - ref`` from the tile start)
        to its slots, and its vertex count, survivor pointers, reference fields and total
        to ``ti``/``tf``. Sums relative to ``ref`` pool as sums relative to ``c`` would in
        exact arithmetic (the test is invariant under a common shift) but round relative
        to the tile's own spread.
        """
        sx = cuda.shared.array(CSLOTS, float64)  # staged x - ref; chunk c at [c * SC, c * SC + CHUNK)
        cpos = cuda.shared.array(CSLOTS, int32)  # chunk hull vertices: position in the tile
        ccum = cuda.shared.array(CSLOTS, float64)  # and sum from the chunk start
        ccnt = cuda.shared.array(NC, int32)
        coff = cuda.shared.array(NC, float64)  # chunk offsets (and the scratch of their scan)
        cL = cuda.shared.array(NC, int32)
        cR = cuda.shared.array(NC, int32)
        cbp = cuda.shared.array(NC, int32)
        cbq = cuda.shared.array(NC, int32)
        cnum = cuda.shared.array(NC, int32)  # scratch of the survivor-count scan
        c = cuda.threadIdx.x
        t = cuda.blockIdx.x
        r = cuda.blockIdx.y
        d = xs.shape[1]
        nt = ti.shape[2]
        b0 = t * TILE
        n_el = min(TILE, d - b0)
        nce = (n_el + CHUNK - 1) // CHUNK
        # values in units of 1 / unit (a power of two: exact), so that no product overflows
        unit = overflow_unit(max(abs(float64(xs[r, 0])), abs(float64(xs[r, d - 1])), lam), d)
        lam = lam * unit
        center = float64(xs[r, d // 2]) * unit
        ref = float64(xs[r, b0 + n_el // 2]) * unit  # the tile's reference: its middle element
        if t == 0 and c == 0:
            tf[r, CENTER, 0] = center
            tf[r, UNIT, 0] = unit
            if nt == 1:
                tf[r, OFF, 0] = 0.0  # one tile: no scan follows
                tf[r, OFF_LO, 0] = 0.0
        scale = float64(d - 1) if d > 1 else 1.0
        j = c
        while j < n_el:  # coalesced loads; one pad slot per chunk against bank conflicts
            sx[j + j // CHUNK] = float64(xs[r, b0 + j]) * unit - ref
            j += NC
        cuda.syncthreads()
        cs = c * CHUNK
        base = c * SC
        chunk_total = 0.0
        if cs < n_el:
            top = -1  # stack entry k: sum at ccum[base + 1 + k], end at cpos[base + 1 + k]
            for j in range(cs, min(cs + CHUNK, n_el)):
                s = sx[j + c]
                n = 1.0
                while top >= 0:
                    start = cpos[base + top] if top > 0 else cs
                    n_left = float64(cpos[base + 1 + top] - start)
                    s_left = ccum[base + 1 + top]
                    if scale * (s * n_left - s_left * n) <= lam * n_left * n * (n_left + n):
                        s += s_left
                        n += n_left
                        top -= 1
                    else:
                        break
                top += 1
                ccum[base + 1 + top] = s
                cpos[base + 1 + top] = j + 1
            cpos[base] = cs
            ccum[base] = 0.0
            for k in range(top + 1):
                chunk_total += ccum[base + 1 + k]
                ccum[base + 1 + k] = chunk_total
            ccnt[c] = top + 2
        prefix, _ = block_exclusive_scan(coff, chunk_total, c, nce, 0.0)  # chunk offsets
        if c < nce:
            coff[c] = prefix
            cL[c] = base
            cR[c] = c_canon(ccnt, nce, base + 1)
        cuda.syncthreads()
        level = 0
        while (1 << level) < nce:  # bridge tree over the chunks; the level count depends on n_el only
            if c * (2 << level) < nce:
                p, q = c_pair_bridge(level, c, nce, scale, lam, ccnt, cpos, ccum, coff, cL, cR)
                cbp[c] = p
                cbq[c] = q
            cuda.syncthreads()
            if c < nce:
                c_take_bridge(level, c, cpos, cbp, cbq, NC, cL, cR)
            cuda.syncthreads()
            level += 1
        n_alive = 0
        if c < nce:
            for k in range(ccnt[c] - 1):
                if c_alive_edge(ccnt, cL, cR, nce, c, k) >= 0:
                    n_alive += 1
        first, nv = block_exclusive_scan(cnum, int32(n_alive), c, nce, int32(0))  # survivors before chunk c
        tbase = t * S
        if c < nce:
            slot = tbase + first
            for k in range(ccnt[c] - 1):
                if c_alive_edge(ccnt, cL, cR, nce, c, k) >= 0:
                    vpos[r, slot] = b0 + cpos[base + k]
                    vcum[r, slot] = coff[c] + ccum[base + k]
                    slot += 1
        if c == 0:
            last = nce - 1
            total = coff[last] + ccum[last * SC + ccnt[last] - 1]
            vpos[r, tbase + nv] = b0 + n_el
            vcum[r, tbase + nv] = total
            ti[r, VCNT, t] = nv + 1
            tf[r, TREL, t] = total
            tf[r, REFC, t] = ref - center
            tf[r, TOT, t] = total + float64(n_el) * (ref - center)
            ti[r, LEFT, t] = tbase
            if nv == 1 and t < nt - 1:
                ti[r, RIGHT, t] = (t + 1) * S
            else:
                ti[r, RIGHT, t] = tbase + 1

    k_scan = get_scan_kernel(TPB)

    @cuda.jit(device=True)
    def scan_row_offsets(tf, r, d, part_hi, part_lo):
        """Row ``r``'s tile offsets: the compensated scan of its tile totals outward from
        the median's tile (all threads of the block take part)."""
        row_outward_scan_dd(tf[r, TOT], (d // 2) // TILE, tf[r, OFF], tf[r, OFF_LO], part_hi, part_lo)

    @cuda.jit
    def k_scan_offsets(d, tf):
        """Compensated scan of the tile totals into the offsets, outward from the median's tile
        (grid = (1, n_rows), <= 1024 threads)."""
        part_hi = cuda.shared.array(1024, float64)
        part_lo = cuda.shared.array(1024, float64)
        r = cuda.blockIdx.y
        scan_row_offsets(tf, r, d, part_hi, part_lo)

    @cuda.jit
    def k_scan_fields(tf, src, dst):
        """Exclusive float64 scan of ``tf[r, src]`` into ``tf[r, dst]`` (grid = (1, n_rows), <= 1024 threads)."""
        part = cuda.shared.array(1024, float64)
        r = cuda.blockIdx.y
        row_exclusive_scan(tf[r, src], tf[r, dst], part)

    @cuda.jit(device=True)
    def bridge_of_pair(level, lam, d, r, i, ti, vpos, vcum, tf):
        """The bridge of merging pair ``i`` of ``level`` in row ``r`` into ``ti[r, BRIDGE_P/Q, i]`` (-1: none)."""
        scale = float64(d - 1) if d > 1 else 1.0
        lam = lam * tf[r, UNIT, 0]
        p, q = pair_bridge(
            level, i, ti.shape[2], scale, lam, ti[r, VCNT], vpos[r], vcum[r], tf[r], ti[r, LEFT], ti[r, RIGHT]
        )
        ti[r, BRIDGE_P, i] = p
        ti[r, BRIDGE_Q, i] = q

    @cuda.jit(device=True)
    def update_of_tile(level, r, t, vpos, ti):
        take_bridge(level, t, vpos[r], ti[r, BRIDGE_P], ti[r, BRIDGE_Q], ti.shape[2], ti[r, LEFT], ti[r, RIGHT])

    @cuda.jit
    def k_bridge(level, lam, d, ti, vpos, vcum, tf):
        """Stage 2a: one thread per merging pair of a level (grid = (pairs, n_rows))."""
        i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if i < (ti.shape[2] + (2 << level) - 1) // (2 << level):
            bridge_of_pair(level, lam, d, cuda.blockIdx.y, i, ti, vpos, vcum, tf)

    @cuda.jit
    def k_update(level, vpos, ti):
        """Stage 2b: one thread per tile moves its survivor pointers (grid = (tiles, n_rows))."""
        t = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if t < ti.shape[2]:
            update_of_tile(level, cuda.blockIdx.y, t, vpos, ti)

    @cuda.jit
    def k_levels(scan, level0, levels, lam, d, ti, vpos, vcum, tf):
        """Stage 2, levels ``[level0, levels)`` in one launch: one block per row (grid = (1, n_rows)).

        With ``scan``, the block first scans the tile totals into the offsets (the launch
        is then the whole of stage 2). The block's threads stride over the pairs, then over
        the tiles, with a barrier after each phase (global writes are visible to the block
        after ``syncthreads``). Used once a level has few pairs, so that the top of the
        tree costs one launch. At most 1024 threads per block.
        """
        part_hi = cuda.shared.array(1024, float64)
        part_lo = cuda.shared.array(1024, float64)
        r = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        nt = ti.shape[2]
        if scan:
            scan_row_offsets(tf, r, d, part_hi, part_lo)
            cuda.syncthreads()
        for level in range(level0, levels):
            pairs = (nt + (2 << level) - 1) // (2 << level)
            i = tid
            while i < pairs:
                bridge_of_pair(level, lam, d, r, i, ti, vpos, vcum, tf)
                i += cuda.blockDim.x
            cuda.syncthreads()
            t = tid
            while t < nt:
                update_of_tile(level, r, t, vpos, ti)
                t += cuda.blockDim.x
            cuda.syncthreads()

    @cuda.jit(device=True)
    def opens_new_id(xs, d, scale, lam, l1, is32, center, vc, vp, vs, of, Lr, Rr, nt, t, i):
        """1 if vertex ``i`` of tile ``t`` starts a final block whose value differs from the previous one's."""
        u = t * S + i
        w = alive_edge(vc, Lr, Rr, nt, t, i)
        if w < 0:
            return 0
        if vp[u] == 0:
            return 1
        pu = prev_vertex(vc, Lr, Rr, u)
        a = block_value(xs, vc, vp, vs, of, Lr, Rr, d, scale, lam, center, l1, is32, u, w)
        b = block_value(xs, vc, vp, vs, of, Lr, Rr, d, scale, lam, center, l1, is32, pu, u)
        return 1 if a != b else 0

    @cuda.jit
    def k_label_flags(xs, d, lam, l1, is32, ti, vpos, vcum, tf, vlab):
        """Inclusive counts of new-id block starts per tile (grid = (n_tiles, n_rows), TPB threads).

        Each thread flags a contiguous run of the tile's vertices (``vlab`` holds the
        flags), a block scan of the run counts gives each run its start, and each thread
        turns its flags into running counts; the tile's count goes to ``tf[r, LCNT, t]``.
        """
        part = cuda.shared.array(TPB, int64)
        t = cuda.blockIdx.x
        r = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        nthr = cuda.blockDim.x
        nt = ti.shape[2]
        scale = float64(d - 1) if d > 1 else 1.0
        lam = lam * tf[r, UNIT, 0]
        center = tf[r, CENTER, 0]
        vc = ti[r, VCNT]
        Lr = ti[r, LEFT]
        Rr = ti[r, RIGHT]
        vp = vpos[r]
        vs = vcum[r]
        of = tf[r]
        xr = xs[r]
        base = t * S
        lo, hi = thread_run(vc[t] - 1)
        count = int64(0)
        for i in range(lo, hi):
            flag = opens_new_id(xr, d, scale, lam, l1, is32, center, vc, vp, vs, of, Lr, Rr, nt, t, i)
            vlab[r, base + i] = flag
            count += flag
        acc, total = block_exclusive_scan(part, count, tid, nthr, int64(0))
        for i in range(lo, hi):
            acc += vlab[r, base + i]
            vlab[r, base + i] = acc
        if tid == 0:
            tf[r, LCNT, t] = float64(total)

    @cuda.jit(device=True)
    def block_of(k, vc, vp, Lr, Rr, nt):
        """Slots ``(u, w)`` of the final hull edge over element ``k`` (its tile's edge, the next
        tile's, or a binary search in its tile's vertices)."""
        t = k // TILE
        if k < vp[Rr[t]]:
            return Lr[t], Rr[t]
        if t + 1 < nt and k >= vp[Lr[t + 1]]:
            return Lr[t + 1], Rr[t + 1]
        base = t * S
        lo = 0
        hi = vc[t] - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if vp[base + mid] <= k:
                lo = mid
            else:
                hi = mid
        return base + lo, canon(vc, nt, base + lo + 1)

    @cuda.jit
    def k_expand(xs, perm, lam, l1, is32, ti, vpos, vcum, tf, out, scatter):
        """Stage 3: one thread per element (grid = (element blocks, n_rows)).

        Writes the value to ``out[r, perm[r, k]]`` if ``scatter``, else to ``out[r, k]``
        (sorted order, for the partitioned unsort). ``xs`` (the sorted rows) is read by
        the direct sums of short blocks, so ``out`` must be another array.
        """
        k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        d = perm.shape[1]
        if k >= d:
            return
        nt = ti.shape[2]
        scale = float64(d - 1) if d > 1 else 1.0
        lam = lam * tf[r, UNIT, 0]
        center = tf[r, CENTER, 0]
        vc = ti[r, VCNT]
        Lr = ti[r, LEFT]
        Rr = ti[r, RIGHT]
        vp = vpos[r]
        u, w = block_of(k, vc, vp, Lr, Rr, nt)
        value = block_value(xs[r], vc, vp, vcum[r], tf[r], Lr, Rr, d, scale, lam, center, l1, is32, u, w)
        if scatter:
            out[r, perm[r, k]] = value
        else:
            out[r, k] = value

    @cuda.jit
    def k_expand_labels(perm, ti, vpos, tf, vlab, labels):
        """Cluster ids: one thread per element writes ``labels[r, perm[r, k]]`` from its block's count."""
        k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if k >= perm.shape[1]:
            return
        u, _ = block_of(k, ti[r, VCNT], vpos[r], ti[r, LEFT], ti[r, RIGHT], ti.shape[2])
        labels[r, perm[r, k]] = int64(tf[r, LBASE, u // S]) + vlab[r, u] - 1

    return types.SimpleNamespace(
        TILE=TILE,
        SLOTS=S,
        CHUNK=CHUNK,
        NC=NC,
        TPB=TPB,
        LOCAL=LOCAL,
        k_tile=k_tile,
        k_scan=k_scan,
        k_scan_offsets=k_scan_offsets,
        k_scan_fields=k_scan_fields,
        k_bridge=k_bridge,
        k_update=k_update,
        k_levels=k_levels,
        k_label_flags=k_label_flags,
        k_expand=k_expand,
        k_expand_labels=k_expand_labels,
    )


@functools.cache
def get_unsort_kernels(threads_per_block: int, max_buckets: int):
    """Compile (lazily) the partitioned unsort: ``out[r, perm[r, k]] = vals[r, k]`` in three passes.

    A plain scatter through a random permutation writes one 32-byte sector per element
    all over the row. Here destinations are first grouped by *bucket* ``i >> shift``
    (windows of ``2**shift`` consecutive destinations, a few MB, so that the windows the
    running blocks write to stay in L2):

    1. ``k_bucket_pass`` (counting) -- per chunk of sorted positions (one thread block), a
       shared histogram of destination buckets, stored bucket-major:
       ``counts[r, b * n_chunks + g]``.
    2. (host) an exclusive cumulative sum of ``counts`` along each row gives every
       (bucket, chunk) pair its start in the staging arrays.
    3. ``k_bucket_pass`` (scattering) -- each block re-reads its chunk and appends
       ``(value, destination)`` to its range of each bucket (shared atomic cursors: the
       order inside a range varies, the destinations do not).
    4. ``k_window_scatter`` -- one thread per staged element: ``out[r, dst] = value``;
       consecutive threads write inside one window.

    ``max_buckets`` bounds the buckets per row (a compile-time shared-array size).
    """
    import types

    TPB = int(threads_per_block)
    NB = int(max_buckets)

    @cuda.jit
    def k_bucket_pass(vals, perm, shift, chunk, table, stage_val, stage_dst, scatter):
        """Per (chunk g, row r) block: count destinations per bucket into ``table[r, b * n_chunks + g]``,
        or (``scatter``) append each (value, destination) at the cursors that ``table`` starts."""
        slot = cuda.shared.array(NB, int64)  # counts, or the cursors
        tid = cuda.threadIdx.x
        g = cuda.blockIdx.x
        r = cuda.blockIdx.y
        n_chunks = cuda.gridDim.x
        d = perm.shape[1]
        nb = ((d - 1) >> shift) + 1
        j = tid
        while j < nb:
            slot[j] = int64(table[r, j * n_chunks + g]) if scatter else 0
            j += cuda.blockDim.x
        cuda.syncthreads()
        k1 = min(g * chunk + chunk, d)
        k = g * chunk + tid
        while k < k1:
            i = perm[r, k]
            pos = cuda.atomic.add(slot, i >> shift, 1)
            if scatter:
                stage_val[r, pos] = vals[r, k]
                stage_dst[r, pos] = i
            k += cuda.blockDim.x
        if not scatter:
            cuda.syncthreads()
            j = tid
            while j < nb:
                table[r, j * n_chunks + g] = float64(slot[j])
                j += cuda.blockDim.x

    @cuda.jit
    def k_window_scatter(stage_val, stage_dst, out):
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if j < out.shape[1]:
            out[r, stage_dst[r, j]] = stage_val[r, j]

    return types.SimpleNamespace(
        TPB=TPB,
        MAX_BUCKETS=NB,
        k_bucket_pass=k_bucket_pass,
        k_window_scatter=k_window_scatter,
    )


def tile_shared_bytes(tile: int, chunk: int) -> int:
    """Static shared memory of one ``k_tile`` block, in bytes (as ptxas reports it for sm_90).

    Its arrays, plus 1024 bytes that the toolchain adds to every block using shared memory.
    ``tests/test_cuda_compile.py`` checks it against ptxas.
    """
    chunk = min(int(chunk), int(tile))
    nc = -(-int(tile) // chunk)
    return nc * (chunk + 1) * (8 + 4 + 8) + nc * (4 * 6 + 8) + 1024


def n_levels(n_tiles: int) -> int:
    """Number of bridge-tree levels, ``ceil(log2(n_tiles))`` (0 for one tile)."""
    return int(n_tiles - 1).bit_length() if n_tiles > 1 else 0
