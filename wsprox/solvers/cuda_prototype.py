"""Plain-numpy prototype of the ``cuda`` backend's parallel algorithm, run serially.

It performs exactly the same steps, with the same tiles, the same data layout and the
same merge decisions, as the kernels in :mod:`wsprox.solvers.cuda_kernels`, one loop
iteration where the GPU runs one thread or one thread block. It is the test oracle of
the kernels and documents the algorithm; it is not meant to be fast.

Algorithm
---------
Per row of length ``d``: sort ``w`` ascending into ``x`` (permutation ``perm``), let
``c = x[d // 2]`` (the median; the pooling tests below use float64 sums of ``x - c``, formed from
per-tile pieces as stage 1 describes). The prox is the
isotonic regression of ``z_k = x_k + v_k``, ``v_k = lam (d - 1 - 2k) / (d - 1)``, i.e. the
lower convex hull of the cumulative-sum diagram ``P_k = (k, sum_{i<k} z_i)``; hull edges
are blocks, an edge's slope is its block's mean. Two adjacent ranges ``[a, m)``,
``[m, b)`` pool (the middle point ``P_m`` is on or above the chord) exactly when::

    (d - 1) (S_R n_L - S_L n_R) <= lam n_L n_R (n_L + n_R)

with ``S`` the sums of ``x - c`` (the velocity sums have the closed form
``lam n (d - a - b) / (d - 1)`` and cancel into the right-hand side). Every geometric
test below is this one predicate, ``pool(a, m, b)``; ties pool, as in the CPU backend.
Its products reach about ``8 d**3 max(|x|, lam)``, so a row whose values or ``lam`` come
near the float64 limit is solved in units of ``1 / unit``, a power of two from
:func:`~wsprox.solvers._scaling.overflow_unit` (exact; the prox is positively
homogeneous), and the block values are scaled back before the soft threshold.

1. **Tile hulls.** The row is cut into tiles of ``TILE`` elements (a thread block on
   the GPU each), and each tile into chunks of ``CHUNK`` elements (a thread each). Every
   chunk runs a sequential pool-adjacent-violators pass; the chunk hulls are merged by
   the bridge tree of stage 2, run inside the tile on the tile's own copy of this data
   layout (shared memory on the GPU), and the tile stores its surviving hull vertices:
   slot ``t * (TILE + 1) + i`` holds the position ``vpos`` (``v_0`` is the tile start,
   the last one the tile end) and the float64 sum ``vcum`` of ``x - ref_t`` from the
   tile start, ``ref_t`` the tile's middle element (the pooling test is invariant under
   a common shift of the values, so in exact arithmetic any reference gives the same
   merges; this one keeps the rounding relative to the tile's own spread). A tile's end point is
   the next tile's start point; slots always name it by the next tile's ``v_0``
   (*canonical* slots), so every hull point has one slot. The tile totals relative to
   ``c`` (``trel_t + n_t (ref_t - c)``) are scanned in double-double into the offsets
   ``off``, outward from the median's tile (see :func:`_scan_offsets`). The sum of
   ``x - c`` over a range between two slots is ``vcum[b] - vcum[a] + n (ref_t - c)``
   inside one tile; across tiles it is the part in each end tile, from that tile's
   ``vcum`` and its ``n (ref - c)``, plus the difference of the compensated offsets of
   the whole tiles between, whose rounding is relative to the values between them and
   the median. So no sum rounds relative to prefixes of the whole row, and the error
   does not grow with ``d`` (see the Accuracy section of :func:`wsprox.prox`).
2. **Bridge tree.** Groups of ``2**level`` tiles are merged pairwise, ``ceil(log2
   n_tiles)`` levels, whatever the data. A group's hull is described without copying:
   its vertices inside a tile are a contiguous range of that tile's own hull vertices,
   and each tile ``t`` keeps ``L[t]``/``R[t]``, the group-hull vertices just at-or-before
   and strictly after its start ``b_t``; ``(L[t], R[t])`` is the hull edge over ``b_t``.
   Merging ``A | B`` (sharing the seam point ``m``) first checks in O(1) whether the seam
   is convex (``not pool(pred(m), m, next(m))``); otherwise it finds the common lower
   tangent ``(p, q)`` by a nested binary search: the outer search runs over B's hull
   edges, and for each candidate vertex ``u`` of B an inner search finds the tangent
   point of ``u`` on A. Each search is a binary search over tiles (the edges
   ``(L[t], R[t])``), then over the vertices of one tile. Ties go to the outermost
   collinear points (pool when the left mean >= the right mean). The merge then sets
   ``L[t], R[t] = p, q`` for the tiles whose start lies in ``[p, q)``: O(1) per tile.
3. **Expansion.** Each element finds the hull edge above it (its own tile's ``L``/``R``,
   the next tile's, or a binary search in its tile's vertices), computes the block mean
   in float64 (a block of at most ``local`` weights, or of equal weights, summed directly
   from its sorted weights relative to its middle one, as on the CPU; a longer one from
   the sums and the closed-form velocity sum), guards against rounding with the previous
   block's mean, soft-thresholds, casts and scatters through ``perm``.
   Cluster ids count, per tile and then across tiles (a scan), the block starts whose
   cast value differs from the previous block's.

Depth and work: a chunk's PAVA is O(CHUNK) deep, each level's searches (inside a tile
or across tiles) O(log^2 d) deep, and there are ``ceil(log2(d / CHUNK))`` levels in all,
so the depth is O(CHUNK + log^3 d) and the number of passes (kernel launches) depends
only on ``d``. Work: O(d) for the chunks and the expansion; a level with ``g`` groups
costs ``g/2`` merges of O(log^2 (group size)), and ``g`` halves per level while the log
grows by one, so all merges together cost O((d / CHUNK) log^2 CHUNK), O(d) for a fixed
chunk; the survivor updates are O(d / CHUNK) inside tiles plus O(n_tiles log n_tiles)
across them.
"""

from __future__ import annotations

import math

import numpy as np

from ._compensated import dd_add
from ._scaling import overflow_unit

__all__ = ["prox_rows", "prox_prototype", "DEFAULT_TILE", "DEFAULT_CHUNK", "DEFAULT_LOCAL"]

#: Default tile size (elements per tile).
DEFAULT_TILE = 1024
#: Default chunk size (elements per thread of the tile stage).
DEFAULT_CHUNK = 8
#: Default longest block whose mean the expansion sums directly from the sorted weights.
DEFAULT_LOCAL = 16


# --------------------------------------------------------------------------- helpers
class _Row:
    """The per-row state of the algorithm (one row of the kernels' 2-D arrays)."""

    def __init__(self, xs, lam, tile, *, center=None, scale=None, tile_refs=False, unit=1.0, local=0):
        self.d = d = xs.shape[0]
        self.xs = xs  # the sorted row, in units of 1 / unit (read by the expansion's local sums)
        self.local = local  # blocks of at most this many elements are summed directly
        self.lam = float(lam)
        self.unit = unit  # xs, lam and every sum are in units of 1 / unit (a power of two)
        self.T = tile
        self.S = tile + 1
        self.nt = -(-d // tile)
        self.center = float(xs[d // 2]) if center is None else center
        self.scale = (float(d - 1) if d > 1 else 1.0) if scale is None else scale
        self.vcnt = np.zeros(self.nt, np.int64)
        self.vpos = np.zeros(self.nt * self.S, np.int64)
        self.vcum = np.zeros(self.nt * self.S, np.float64)
        self.tot = np.zeros(self.nt, np.float64)
        self.off = np.zeros(self.nt, np.float64)
        self.off_lo = np.zeros(self.nt, np.float64)  # low parts of the compensated offsets
        # tile_refs (the row level): vcum is relative to each tile's own reference ref_t
        # (its middle element), ref_c[t] = ref_t - c, trel[t] = the tile total relative to
        # ref_t, and tot[t] = the tile total relative to c
        self.tile_refs = tile_refs
        self.ref_c = np.zeros(self.nt, np.float64)
        self.trel = np.zeros(self.nt, np.float64)
        self.L = np.zeros(self.nt, np.int64)
        self.R = np.zeros(self.nt, np.int64)

    # slot helpers -------------------------------------------------------------
    def canon(self, slot):
        t = slot // self.S
        if slot - t * self.S == self.vcnt[t] - 1 and t < self.nt - 1:
            return (t + 1) * self.S
        return slot

    def span(self, a, b):
        """float64 sum of ``x - c`` over positions ``[vpos[a], vpos[b])``.

        Without tile references (inside a tile): a difference of prefix sums. With them:
        the part in each end tile from its own reference-relative sums plus ``n (ref - c)``,
        and the whole tiles between from the compensated offsets.
        """
        ta = a // self.S
        tb = b // self.S
        if not self.tile_refs:
            if ta == tb:
                return self.vcum[b] - self.vcum[a]
            return (self.off[tb] - self.off[ta]) + (self.vcum[b] - self.vcum[a])
        if ta == tb:
            return (self.vcum[b] - self.vcum[a]) + float(self.vpos[b] - self.vpos[a]) * self.ref_c[ta]
        tail = (self.trel[ta] - self.vcum[a]) + float((ta + 1) * self.T - self.vpos[a]) * self.ref_c[ta]
        head = self.vcum[b] + float(self.vpos[b] - tb * self.T) * self.ref_c[tb]
        t1 = ta + 1
        return (self.off[tb] - self.off[t1]) + (((self.off_lo[tb] - self.off_lo[t1]) + tail) + head)

    def pool(self, a, m, b):
        """True when the ranges ``[a, m)`` and ``[m, b)`` pool (left mean >= right mean)."""
        n_l = float(self.vpos[m] - self.vpos[a])
        n_r = float(self.vpos[b] - self.vpos[m])
        s_l = self.span(a, m)
        s_r = self.span(m, b)
        return self.scale * (s_r * n_l - s_l * n_r) <= self.lam * n_l * n_r * (n_l + n_r)

    def end_slot(self, g1):
        """Canonical slot of the end point of a group ending before tile ``g1``."""
        if g1 < self.nt:
            return g1 * self.S
        return (self.nt - 1) * self.S + self.vcnt[self.nt - 1] - 1

    def pred_of_end(self, g1):
        """The group-hull vertex before the end point of the group ending before tile ``g1``."""
        t = g1 - 1
        if self.R[t] // self.S == t:
            return t * self.S + self.vcnt[t] - 2
        return self.L[t]

    def first_edge(self, g0, g1, pred, arg):
        """Start vertex of the first group-hull edge ``(u, w)`` with ``pred(u, w, arg)``.

        The group is tiles ``[g0, g1)``; the predicate must be false then true along the
        hull. Returns the group's end vertex when it is never true.
        """
        lo, hi = g0, g1  # first tile t in [g0, g1) whose edge (L[t], R[t]) is true; g1 if none
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(self.L[mid], self.R[mid], arg):
                hi = mid
            else:
                lo = mid + 1
        ts = lo
        if ts == g0:
            return self.L[g0]
        tp = ts - 1
        lnext = self.L[ts] if ts < g1 else self.end_slot(g1)
        base = tp * self.S
        if self.R[tp] // self.S != tp:
            return lnext
        i_lo = self.R[tp] - base
        i_hi = lnext - base if lnext // self.S == tp else self.vcnt[tp] - 1
        while i_lo < i_hi:  # first interior edge (i, i + 1) of tile tp that is true
            mid = (i_lo + i_hi) // 2
            if pred(base + mid, self.canon(base + mid + 1), arg):
                i_hi = mid
            else:
                i_lo = mid + 1
        if i_lo == (lnext - base if lnext // self.S == tp else self.vcnt[tp] - 1):
            return lnext
        return base + i_lo

    # predicates ---------------------------------------------------------------
    def _tangent_pred(self, u, w, q):
        return self.pool(u, w, q)

    def tangent_on(self, g0, g1, q):
        """Tangent point on the hull of tiles ``[g0, g1)`` seen from the point ``q`` to its right."""
        return self.first_edge(g0, g1, self._tangent_pred, q)

    def _bridge_pred(self, u, w, group):
        g0, g1 = group
        p = self.tangent_on(g0, g1, u)
        return not self.pool(p, u, w)

    def bridge(self, g0, gm, g2):
        """The bridge ``(p, q)`` merging groups ``[g0, gm)`` and ``[gm, g2)``, or None if convex."""
        m = gm * self.S
        if not self.pool(self.pred_of_end(gm), m, self.R[gm]):
            return None
        q = self.first_edge(gm, g2, self._bridge_pred, (g0, gm))
        p = self.tangent_on(g0, gm, q)
        return p, q

    def alive_edge(self, t, i):
        """End slot of the final-hull edge from vertex ``i`` of tile ``t``; -1 if that vertex was removed."""
        u = t * self.S + i
        if i == 0:
            return self.R[t] if self.L[t] == u else -1
        if not (self.R[t] // self.S == t and self.R[t] <= u):
            return -1
        if t + 1 < self.nt:
            last = self.L[t + 1]
            if not ((last // self.S == t and u <= last) or last // self.S == t + 1):
                return -1
            if u == last:
                return self.R[t + 1]
        return self.canon(u + 1)

    def prev_vertex(self, u):
        """The final-hull vertex before the vertex ``u`` (``u`` must not be position 0)."""
        t = u // self.S
        if u == t * self.S:
            return self.pred_of_end(t)
        if u == self.R[t]:
            return self.L[t]
        return u - 1


# --------------------------------------------------------------------------- stages
def _chunk_pava(row, xs):
    """Sequential PAVA in every tile of ``row`` (one GPU thread per chunk), hull vertices into the slots."""
    d, T, S = row.d, row.T, row.S
    for t in range(row.nt):
        b0 = t * T
        n_el = min(T, d - b0)
        ends = np.empty(n_el, np.int64)
        sums = np.empty(n_el, np.float64)
        top = -1
        for j in range(n_el):
            s = float(xs[b0 + j]) - row.center
            n = 1.0
            while top >= 0:
                start = ends[top - 1] if top > 0 else 0
                n_left = float(ends[top] - start)
                s_left = sums[top]
                if row.scale * (s * n_left - s_left * n) <= row.lam * n_left * n * (n_left + n):
                    s += s_left
                    n += n_left
                    top -= 1
                else:
                    break
            top += 1
            sums[top] = s
            ends[top] = j + 1
        base = t * S
        row.vpos[base] = b0
        row.vcum[base] = 0.0
        acc = 0.0
        for j in range(top + 1):
            acc += sums[j]
            row.vpos[base + 1 + j] = b0 + ends[j]
            row.vcum[base + 1 + j] = acc
        row.vcnt[t] = top + 2
        row.tot[t] = acc
    _init_edges(row)


def _init_edges(row):
    for t in range(row.nt):
        row.L[t] = t * row.S
        row.R[t] = row.canon(t * row.S + 1)


def _tile_pava(row, xs, chunk):
    """Stage 1: the hull of every tile (one GPU thread block per tile), vertices into the slots.

    Inside a tile, chunks of ``chunk`` elements run :func:`_chunk_pava` (one thread each)
    and are merged by the bridge tree, on the tile's own sub-row (shared memory on the GPU)
    whose centre is the tile's reference (its middle element) and whose scale is the row's;
    the surviving vertices are then written in order.
    """
    T, S = row.T, row.S
    for t in range(row.nt):
        b0 = t * T
        part = xs[b0 : min(b0 + T, row.d)]
        ref = float(xs[b0 + part.shape[0] // 2])  # the tile's reference: its middle element
        sub = _Row(part, row.lam, min(chunk, T), center=ref, scale=row.scale)
        _chunk_pava(sub, part)
        _scan_offsets(sub, compensated=False)
        _bridge_levels(sub)
        slot = t * S
        for c in range(sub.nt):
            for i in range(sub.vcnt[c] - 1):
                if sub.alive_edge(c, i) >= 0:
                    u = c * sub.S + i
                    row.vpos[slot] = b0 + sub.vpos[u]
                    row.vcum[slot] = sub.off[c] + sub.vcum[u]
                    slot += 1
        last = sub.nt - 1
        total = sub.off[last] + sub.vcum[last * sub.S + sub.vcnt[last] - 1]
        row.vpos[slot] = b0 + part.shape[0]
        row.vcum[slot] = total
        row.vcnt[t] = slot - t * S + 1
        row.ref_c[t] = ref - row.center
        row.trel[t] = total
        row.tot[t] = total + float(part.shape[0]) * row.ref_c[t]
    _init_edges(row)


def _scan_offsets(row, compensated=True):
    """The tile offsets: ``off[b] - off[a]`` is the sum of the tile totals of tiles ``a .. b-1``.

    ``compensated`` (the row level): in double-double (``off`` + ``off_lo``), outward
    from the median's tile ``m``: ``off[t]`` is the sum of the totals of tiles ``m ..
    t-1`` for ``t >= m`` and minus that of tiles ``t .. m-1`` for ``t < m``. The totals
    are relative to the median ``c`` of the sorted row, so each of the two runs adds
    terms of one sign (but the median tile's), and an offset is at most the sum of
    ``|x - c|`` between the median and its tile; with the 106 bits of the double-double
    sums, the difference of two offsets is the sum between them up to about one float64
    rounding of the largest ``|x - c|`` in that range, whatever the rest of the row holds
    (a scan from the row start would round relative to the far larger prefixes of rows
    like ``[-1e300, ..., 1e-10, ...]``). Otherwise a plain float64 scan from the start
    (inside a tile, where the sums are relative to the tile's reference and offsets stay
    below about ``TILE`` times the tile's range).
    """
    if not compensated:
        acc = 0.0
        for t in range(row.nt):
            row.off[t] = acc
            acc += row.tot[t]
        return
    origin = (row.d // 2) // row.T
    hi = lo = 0.0
    for t in range(origin, row.nt):  # forward from the median's tile
        row.off[t] = hi
        row.off_lo[t] = lo
        hi, lo = dd_add(hi, lo, float(row.tot[t]), 0.0)
    hi = lo = 0.0
    for t in range(origin - 1, -1, -1):  # backward from it
        hi, lo = dd_add(hi, lo, float(row.tot[t]), 0.0)
        row.off[t] = -hi
        row.off_lo[t] = -lo


def _bridge_levels(row):
    """Stage 2: ``ceil(log2(n_tiles))`` levels of pairwise group merges."""
    levels = math.ceil(math.log2(row.nt)) if row.nt > 1 else 0
    for level in range(levels):
        h = 1 << level
        bridges = []
        for g0 in range(0, row.nt, 2 * h):  # one GPU thread per pair
            gm = g0 + h
            if gm >= row.nt:
                continue
            g2 = min(g0 + 2 * h, row.nt)
            bridges.append((g0, g2, row.bridge(g0, gm, g2)))
        for g0, g2, pq in bridges:  # one GPU thread per tile
            if pq is None:
                continue
            p, q = pq
            for t in range(g0, g2):
                if row.vpos[p] <= t * row.T < row.vpos[q]:
                    row.L[t] = p
                    row.R[t] = q


def _block_of(row, k):
    """Slots ``(u, w)`` of the final hull edge over element ``k``."""
    t = k // row.T
    if k < row.vpos[row.R[t]]:
        return row.L[t], row.R[t]
    if t + 1 < row.nt and k >= row.vpos[row.L[t + 1]]:
        return row.L[t + 1], row.R[t + 1]
    base = t * row.S
    lo, hi = 0, row.vcnt[t] - 1  # largest i with vpos[base + i] <= k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if row.vpos[base + mid] <= k:
            lo = mid
        else:
            hi = mid
    return base + lo, row.canon(base + lo + 1)


def _mean(row, u, w):
    """Mean of ``z`` over the block ``(u, w)``, in units of ``1 / unit``.

    A block of at most ``row.local`` elements, or of equal weights, is summed directly from
    the sorted weights relative to its middle element ``x_r``, as the CPU backend does:
    ``S / n + drift (d - a - b) + x_r`` (a singleton gets ``x + v``, the CPU's bits).
    Longer blocks take the range sum of the hull's tile sums. Either way the formula
    depends only on the block, not on the tiling.
    """
    a, b = int(row.vpos[u]), int(row.vpos[w])
    n = b - a
    xs = row.xs
    if n <= row.local or xs[a] == xs[b - 1]:
        ref = float(xs[(a + b) // 2])
        s = 0.0
        if xs[a] != xs[b - 1]:
            for j in range(a, b):
                s += float(xs[j]) - ref
        return s / float(n) + (row.lam / row.scale) * float(row.d - a - b) + ref
    # one formula whatever the tiling: exact sums give the same bits for every TILE/CHUNK
    return row.span(u, w) / float(n) + row.lam * float(row.d - a - b) / row.scale + row.center


def _soft(m, l1):
    if m > l1:
        return m - l1
    if m < -l1:
        return m + l1
    return 0.0


def _block_value(row, u, w, l1, dtype):
    """Cast output value of the block ``(u, w)`` (mean guarded by the previous block's)."""
    m = _mean(row, u, w)
    if row.vpos[u] > 0:
        pu = row.prev_vertex(u)
        mp = _mean(row, pu, u)
        if m < mp:
            m = mp
    m /= row.unit
    return dtype.type(_soft(m, l1) if l1 > 0.0 else m)


def _is_new_label(row, u, w, l1, dtype):
    """1 if the block starting at ``u`` gets a new cluster id (its cast value differs)."""
    if row.vpos[u] == 0:
        return 1
    pu = row.prev_vertex(u)
    return int(_block_value(row, u, w, l1, dtype) != _block_value(row, pu, u, l1, dtype))


def _label_counts(row, l1, dtype):
    """Per slot: inclusive count of new-label block starts in its tile; per tile: base (scan)."""
    vlab = np.zeros(row.nt * row.S, np.int64)
    cnt = np.zeros(row.nt, np.int64)
    for t in range(row.nt):  # one GPU thread block per tile
        base = t * row.S
        acc = 0
        for i in range(row.vcnt[t] - 1):
            u = base + i
            w = row.alive_edge(t, i)
            if w >= 0:
                acc += _is_new_label(row, u, w, l1, dtype)
            vlab[u] = acc
        cnt[t] = acc
    base_t = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    return vlab, base_t


def _expand(row, perm, l1, out, labels, want_labels):
    """Stage 3: value (and cluster id) of every element, scattered through ``perm``."""
    dtype = out.dtype
    if want_labels:
        vlab, base_t = _label_counts(row, l1, dtype)
    for k in range(row.d):  # one GPU thread per element
        u, w = _block_of(row, k)
        i = perm[k]
        out[i] = _block_value(row, u, w, l1, dtype)
        if want_labels:
            labels[i] = base_t[u // row.S] + vlab[u] - 1


def prox_rows(w, lam, l1=0.0, *, tile=DEFAULT_TILE, chunk=DEFAULT_CHUNK, local=DEFAULT_LOCAL, return_clusters=False):
    """Prox of every row of the 2-D float32/float64 array ``w`` by the parallel algorithm, serially.

    Parameters
    ----------
    w : numpy.ndarray
        2-D float32 or float64 array, shape ``(n, d)``, ``d >= 1``, finite.
    lam, l1 : float
        Strengths ``>= 0``.
    tile : int, optional
        Tile size (elements per tile), ``>= 1``.
    chunk : int, optional
        Elements per thread of the tile stage, ``>= 1`` (``chunk >= tile``: one
        sequential PAVA per tile).
    local : int, optional
        Blocks of at most ``local`` elements (and blocks of equal weights) get their mean
        from a direct sum of their sorted weights, ``>= 0``.
    return_clusters : bool, optional
        Also return int64 cluster ids (0..K-1 per row, increasing with the value).

    Returns
    -------
    x : numpy.ndarray
        Same shape and dtype as ``w``.
    labels : numpy.ndarray or None
        int64 cluster ids if ``return_clusters``.
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype not in (np.float32, np.float64):
        raise ValueError("w must be a 2-D float32 or float64 array")
    if int(tile) < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if int(local) < 0:
        raise ValueError(f"local must be >= 0, got {local}")
    n, d = w.shape
    out = np.empty_like(w)
    labels = np.zeros((n, d), np.int64) if return_clusters else None
    for r in range(n):
        perm = np.argsort(w[r], kind="stable")
        xs = w[r][perm].astype(np.float64)
        # in units of 1 / unit (a power of two: exact), so that no product overflows
        unit = overflow_unit(max(abs(xs[0]), abs(xs[-1]), float(lam)), d)
        xs *= unit
        row = _Row(xs, float(lam) * unit, int(tile), tile_refs=True, unit=unit, local=int(local))
        _tile_pava(row, xs, int(chunk))
        _scan_offsets(row)
        _bridge_levels(row)
        _expand(row, perm, float(l1), out[r], labels[r] if return_clusters else None, return_clusters)
    return out, labels


def prox_prototype(
    w, lam, l1=0.0, *, tile=DEFAULT_TILE, chunk=DEFAULT_CHUNK, local=DEFAULT_LOCAL, return_clusters=False
):
    """Prox of a 1-D array (or of every row of a 2-D array) with the prototype; see :func:`prox_rows`."""
    w = np.asarray(w)
    one = w.ndim == 1
    x, labels = prox_rows(
        w.reshape(1, -1) if one else w, lam, l1, tile=tile, chunk=chunk, local=local, return_clusters=return_clusters
    )
    if one:
        x = x[0]
        labels = None if labels is None else labels[0]
    return (x, labels) if return_clusters else x
