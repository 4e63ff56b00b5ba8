"""numba.cuda kernels of the ``cuda`` backend (no validation, no dispatch).

They implement, launch for launch, the algorithm of :mod:`wsprox.solvers.cuda_prototype`
(read its docstring for the mathematics, the data layout and the depth/work bounds):

1. :func:`k_tile` -- one thread block per tile: the block stages the tile's ``x - c`` in
   shared memory (coalesced loads, float64), then one thread runs a sequential PAVA with
   its stack in shared memory and writes the tile's hull vertices. (A per-thread-chunk
   PAVA merged in a tree inside the block is the planned optimisation; the sequential
   version keeps the tile depth at O(TILE).)
2. :func:`k_scan` -- one thread block per row: exclusive float64 scan of per-tile values.
3. :func:`k_bridge` / :func:`k_update` -- one launch pair per level of the bridge tree
   (``ceil(log2 n_tiles)`` levels): one thread per merging pair finds the bridge by the
   nested binary search, then one thread per tile moves its ``L``/``R`` survivor pointers.
4. :func:`k_label_flags` (only for cluster ids) -- one thread block per tile counts the
   block starts that open a new cluster id, then :func:`k_scan` over tiles.
5. :func:`k_expand` -- one thread per element: block mean in float64, rounding guard,
   soft threshold, cast, scatter through the sort permutation.

Kernels are built by :func:`get_kernels` for a given tile size and threads per block
(shared-array sizes must be compile-time constants) and cached.
"""

from __future__ import annotations

import functools

from numba import cuda, float32, float64, int64

__all__ = ["get_kernels", "get_scan_kernel", "k_nonfinite", "soft_cast"]


@cuda.jit
def k_nonfinite(w, count, first):
    """Count non-finite entries of the 2-D ``w``; ``first`` gets the smallest flat index of one."""
    i = cuda.grid(1)
    n, d = w.shape
    if i < n * d:
        v = w[i // d, i % d]
        if not (v - v == 0.0):  # NaN and +-inf give NaN
            cuda.atomic.add(count, 0, 1)
            cuda.atomic.min(first, 0, i)


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
        n = src.shape[1]
        tid = cuda.threadIdx.x
        nthr = cuda.blockDim.x
        chunk = (n + nthr - 1) // nthr
        lo = tid * chunk
        hi = min(lo + chunk, n)
        acc = 0.0
        for i in range(lo, hi):
            acc += src[r, i]
        part[tid] = acc
        cuda.syncthreads()
        if tid == 0:
            running = 0.0
            for i in range(nthr):
                v = part[i]
                part[i] = running
                running += v
        cuda.syncthreads()
        acc = part[tid]
        for i in range(lo, hi):
            v = src[r, i]
            dst[r, i] = acc
            acc += v

    return k_scan


@functools.cache
def get_kernels(tile: int, threads_per_block: int):
    """Compile (lazily) and return the kernels for ``tile`` elements per tile.

    Returns
    -------
    types.SimpleNamespace
        ``k_tile, k_scan, k_bridge, k_update, k_label_flags, k_expand`` and the
        constants ``TILE``, ``SLOTS`` (= TILE + 1) and ``TPB``.
    """
    import types

    TILE = int(tile)
    S = TILE + 1
    TPB = int(threads_per_block)

    # ------------------------------------------------------------------ device helpers
    @cuda.jit(device=True)
    def canon(vcnt, nt, slot):
        t = slot // S
        if slot - t * S == vcnt[t] - 1 and t < nt - 1:
            return (t + 1) * S
        return slot

    @cuda.jit(device=True)
    def span(vcum, off, a, b):
        ta = a // S
        tb = b // S
        if ta == tb:
            return vcum[b] - vcum[a]
        return (off[tb] - off[ta]) + (vcum[b] - vcum[a])

    @cuda.jit(device=True)
    def pool(vpos, vcum, off, scale, lam, a, m, b):
        n_l = float64(vpos[m] - vpos[a])
        n_r = float64(vpos[b] - vpos[m])
        s_l = span(vcum, off, a, m)
        s_r = span(vcum, off, m, b)
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
    def block_mean(vpos, vcum, off, d, scale, lam, center, u, w):
        a = vpos[u]
        b = vpos[w]
        return span(vcum, off, u, w) / float64(b - a) + lam * float64(d - a - b) / scale + center

    @cuda.jit(device=True)
    def block_value(vcnt, vpos, vcum, off, L, R, d, scale, lam, center, l1, is32, u, w):
        m = block_mean(vpos, vcum, off, d, scale, lam, center, u, w)
        if vpos[u] > 0:
            pu = prev_vertex(vcnt, L, R, u)
            mp = block_mean(vpos, vcum, off, d, scale, lam, center, pu, u)
            if m < mp:
                m = mp
        return soft_cast(m, l1, is32)

    # ------------------------------------------------------------------ kernels
    @cuda.jit
    def k_tile(xs, lam, vcnt, vpos, vcum, tot, L, R):
        """Stage 1: PAVA per tile (grid = (n_tiles, n_rows), one block per tile)."""
        sy = cuda.shared.array(TILE, float64)
        sums = cuda.shared.array(TILE, float64)
        ends = cuda.shared.array(TILE, int64)
        t = cuda.blockIdx.x
        r = cuda.blockIdx.y
        d = xs.shape[1]
        nt = vcnt.shape[1]
        b0 = t * TILE
        n_el = min(TILE, d - b0)
        center = float64(xs[r, d // 2])
        j = cuda.threadIdx.x
        while j < n_el:
            sy[j] = float64(xs[r, b0 + j]) - center
            j += cuda.blockDim.x
        cuda.syncthreads()
        if cuda.threadIdx.x == 0:
            scale = float64(d - 1) if d > 1 else 1.0
            top = -1
            for j in range(n_el):
                s = sy[j]
                n = 1.0
                while top >= 0:
                    start = ends[top - 1] if top > 0 else 0
                    n_left = float64(ends[top] - start)
                    s_left = sums[top]
                    if scale * (s * n_left - s_left * n) <= lam * n_left * n * (n_left + n):
                        s += s_left
                        n += n_left
                        top -= 1
                    else:
                        break
                top += 1
                sums[top] = s
                ends[top] = j + 1
            base = t * S
            vpos[r, base] = b0
            vcum[r, base] = 0.0
            acc = 0.0
            for j in range(top + 1):
                acc += sums[j]
                vpos[r, base + 1 + j] = b0 + ends[j]
                vcum[r, base + 1 + j] = acc
            vcnt[r, t] = top + 2
            tot[r, t] = acc
            L[r, t] = base
            if top == 0 and t < nt - 1:
                R[r, t] = (t + 1) * S
            else:
                R[r, t] = base + 1

    k_scan = get_scan_kernel(TPB)

    @cuda.jit
    def k_bridge(level, lam, d, vcnt, vpos, vcum, off, L, R, bp, bq):
        """Stage 2a: one thread per merging pair of a level (grid = (pairs, n_rows))."""
        i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if i >= bp.shape[1]:
            return
        nt = vcnt.shape[1]
        h = 1 << level
        g0 = i * 2 * h
        gm = g0 + h
        bp[r, i] = -1
        if gm >= nt:
            return
        g2 = min(g0 + 2 * h, nt)
        scale = float64(d - 1) if d > 1 else 1.0
        vc = vcnt[r]
        vp = vpos[r]
        vs = vcum[r]
        of = off[r]
        Lr = L[r]
        Rr = R[r]
        m = gm * S
        if not pool(vp, vs, of, scale, lam, pred_end(vc, Lr, Rr, gm), m, Rr[gm]):
            return
        q = first_edge_bridge(vc, vp, vs, of, Lr, Rr, nt, scale, lam, g0, gm, g2)
        p = first_edge_tangent(vc, vp, vs, of, Lr, Rr, nt, scale, lam, g0, gm, q)
        bp[r, i] = p
        bq[r, i] = q

    @cuda.jit
    def k_update(level, vpos, bp, bq, L, R):
        """Stage 2b: one thread per tile moves its survivor pointers (grid = (tiles, n_rows))."""
        t = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        if t >= L.shape[1]:
            return
        pair = t // (2 << level)
        if pair >= bp.shape[1]:
            return
        p = bp[r, pair]
        if p < 0:
            return
        q = bq[r, pair]
        b = t * TILE
        if vpos[r, p] <= b and b < vpos[r, q]:
            L[r, t] = p
            R[r, t] = q

    @cuda.jit
    def k_label_flags(xs, lam, l1, is32, vcnt, vpos, vcum, off, L, R, vlab, lcnt):
        """Per tile (one thread block, one working thread): inclusive counts of new-id block starts."""
        t = cuda.blockIdx.x
        r = cuda.blockIdx.y
        if cuda.threadIdx.x != 0:
            return
        d = xs.shape[1]
        nt = vcnt.shape[1]
        scale = float64(d - 1) if d > 1 else 1.0
        center = float64(xs[r, d // 2])
        vc = vcnt[r]
        vp = vpos[r]
        vs = vcum[r]
        of = off[r]
        Lr = L[r]
        Rr = R[r]
        base = t * S
        acc = 0
        for i in range(vc[t] - 1):
            u = base + i
            alive = False
            w = -1
            if i == 0:
                alive = Lr[t] == u
                w = Rr[t]
            else:
                alive = Rr[t] // S == t and Rr[t] <= u
                if alive and t + 1 < nt:
                    last = Lr[t + 1]
                    alive = (last // S == t and u <= last) or last // S == t + 1
                if alive:
                    if t + 1 < nt and u == Lr[t + 1]:
                        w = Rr[t + 1]
                    else:
                        w = canon(vc, nt, u + 1)
            if alive:
                if vp[u] == 0:
                    acc += 1
                else:
                    pu = prev_vertex(vc, Lr, Rr, u)
                    a = block_value(vc, vp, vs, of, Lr, Rr, d, scale, lam, center, l1, is32, u, w)
                    b = block_value(vc, vp, vs, of, Lr, Rr, d, scale, lam, center, l1, is32, pu, u)
                    if a != b:
                        acc += 1
            vlab[r, u] = acc
        lcnt[r, t] = float64(acc)

    @cuda.jit
    def k_expand(xs, perm, lam, l1, is32, vcnt, vpos, vcum, off, L, R, out, want_labels, vlab, lbase, labels):
        """Stage 3: one thread per element (grid = (element blocks, n_rows))."""
        k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        r = cuda.blockIdx.y
        d = xs.shape[1]
        if k >= d:
            return
        nt = vcnt.shape[1]
        scale = float64(d - 1) if d > 1 else 1.0
        center = float64(xs[r, d // 2])
        vc = vcnt[r]
        vp = vpos[r]
        vs = vcum[r]
        of = off[r]
        Lr = L[r]
        Rr = R[r]
        t = k // TILE
        if k < vp[Rr[t]]:
            u = Lr[t]
            w = Rr[t]
        elif t + 1 < nt and k >= vp[Lr[t + 1]]:
            u = Lr[t + 1]
            w = Rr[t + 1]
        else:
            base = t * S
            lo = 0
            hi = vc[t] - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if vp[base + mid] <= k:
                    lo = mid
                else:
                    hi = mid
            u = base + lo
            w = canon(vc, nt, base + lo + 1)
        value = block_value(vc, vp, vs, of, Lr, Rr, d, scale, lam, center, l1, is32, u, w)
        i = perm[r, k]
        out[r, i] = value
        if want_labels:
            labels[r, i] = int64(lbase[r, u // S]) + vlab[r, u] - 1

    return types.SimpleNamespace(
        TILE=TILE,
        SLOTS=S,
        TPB=TPB,
        k_tile=k_tile,
        k_scan=k_scan,
        k_bridge=k_bridge,
        k_update=k_update,
        k_label_flags=k_label_flags,
        k_expand=k_expand,
    )


def n_levels(n_tiles: int) -> int:
    """Number of bridge-tree levels, ``ceil(log2(n_tiles))`` (0 for one tile)."""
    return int(n_tiles - 1).bit_length() if n_tiles > 1 else 0
