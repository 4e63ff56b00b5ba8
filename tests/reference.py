"""Independent references for the tests: exact rational PAVA, a plain float64 PAVA, hard inputs.

Nothing here imports wsprox: these are written from the mathematics in
``design/math.md`` alone so that they can check every backend.

For ``w`` in R^d sorted ascending into ``x_0 <= ... <= x_{d-1}``, the prox of
``lam * R`` is the isotonic (non-decreasing) regression of ``z_k = x_k + v_k`` with
velocities ``v_k = lam (d - 1 - 2k) / (d - 1)``, mapped back through the sort; adding
``l1 * ||u||_1`` soft-thresholds the result. Pooling convention: adjacent blocks are
pooled when the left mean is ``>=`` the right mean, so final blocks have strictly
increasing means.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = [
    "prox_exact",
    "prox_reference",
    "labels_of",
    "FAMILIES",
    "family",
    "max_abs_error",
    "row_scale",
]


# --------------------------------------------------------------------------------------
# exact rational reference
# --------------------------------------------------------------------------------------
def _soft(value, mu):
    """``sign(value) max(|value| - mu, 0)`` for Fractions (and floats)."""
    if value > mu:
        return value - mu
    if value < -mu:
        return value + mu
    return value * 0


def labels_of(values) -> list[int]:
    """Ids of the groups of equal values, numbered ``0..K-1`` in increasing order of value."""
    distinct = sorted(set(values))
    rank = {v: k for k, v in enumerate(distinct)}
    return [rank[v] for v in values]


def prox_exact(w, lam, l1=0) -> tuple[list[Fraction], list[int]]:
    """Exact prox of one 1-D vector in rational arithmetic.

    Parameters
    ----------
    w : sequence of float or int (or Fraction)
        One vector; floats are converted exactly (``Fraction(float)`` is exact).
    lam, l1 : float, int or Fraction
        Strengths ``>= 0`` of the weight-sharing and L1 terms, also taken exactly.

    Returns
    -------
    values : list of Fraction
        The exact prox, in ``w``'s order.
    labels : list of int
        Groups of equal value (after the L1 soft-threshold), numbered in increasing
        order of value.
    """
    ws = [Fraction(v) for v in np.asarray(w).ravel().tolist()]
    lam = Fraction(lam)
    l1 = Fraction(l1)
    d = len(ws)
    if d == 0:
        return [], []
    order = sorted(range(d), key=lambda i: ws[i])  # stable; ties pool anyway
    if d == 1:
        z = [ws[order[0]]]
    else:
        z = [ws[i] + lam * (d - 1 - 2 * k) / (d - 1) for k, i in enumerate(order)]
    blocks: list[list] = []  # [sum, count]
    for value in z:
        s, n = value, 1
        while blocks and blocks[-1][0] / blocks[-1][1] >= s / n:
            ps, pn = blocks.pop()
            s += ps
            n += pn
        blocks.append([s, n])
    sorted_values = []
    for s, n in blocks:
        sorted_values.extend([s / n] * n)
    values = [Fraction(0)] * d
    for k, i in enumerate(order):
        values[i] = _soft(sorted_values[k], l1) if l1 > 0 else sorted_values[k]
    return values, labels_of(values)


# --------------------------------------------------------------------------------------
# plain float64 reference
# --------------------------------------------------------------------------------------
def _prox_reference_row(row: np.ndarray, lam: float, l1: float) -> np.ndarray:
    d = row.shape[0]
    if d <= 1 or lam == 0.0:
        x = row.astype(np.float64)
    else:
        order = np.argsort(row, kind="stable")
        xs = row[order].astype(np.float64)
        center = xs[d // 2]
        z = (xs - center) + lam * (d - 1 - 2 * np.arange(d)) / (d - 1)
        sums: list[float] = []
        counts: list[int] = []
        for value in z.tolist():
            s, n = value, 1
            # pool while left mean >= right mean (cross-multiplied: exact for integers)
            while sums and sums[-1] * n >= s * counts[-1]:
                s += sums.pop()
                n += counts.pop()
            sums.append(s)
            counts.append(n)
        sorted_x = np.repeat(np.array(sums) / np.array(counts), counts) + center
        x = np.empty(d)
        x[order] = sorted_x
    if l1 > 0:
        x = np.copysign(np.maximum(np.abs(x) - l1, 0.0), x) + 0.0
    return x


def prox_reference(w, lam, l1=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Plain float64 prox: sort, stack of (sum, count) blocks pooled while violated, unsort.

    Parameters
    ----------
    w : array_like, 1-D or 2-D
        One vector, or one problem per row (the last axis).
    lam, l1 : float
        Strengths ``>= 0``.

    Returns
    -------
    x : numpy.ndarray of float64
        The prox, of ``w``'s shape.
    labels : numpy.ndarray of int64
        Per problem, groups of equal value numbered in increasing order of value.
    """
    arr = np.asarray(w)
    rows = np.atleast_2d(arr).astype(np.float64)
    x = np.stack([_prox_reference_row(r, float(lam), float(l1)) for r in rows]) if rows.shape[0] else rows.copy()
    labels = np.array([labels_of(r.tolist()) for r in x], dtype=np.int64).reshape(x.shape)
    return x.reshape(arr.shape), labels.reshape(arr.shape)


# --------------------------------------------------------------------------------------
# comparison helpers
# --------------------------------------------------------------------------------------
def row_scale(w, lam, l1=0.0) -> float:
    """Natural absolute scale of a problem: spread of ``w`` plus the strengths (plus |w| if l1 > 0)."""
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0:
        return 1.0
    spread = float(np.max(np.abs(w - np.median(w))))
    scale = spread + float(lam) + float(l1)
    if l1 > 0:
        scale += float(np.max(np.abs(w)))
    return scale if scale > 0 else 1.0


def max_abs_error(x, exact) -> float:
    """``max |x - exact|`` computed exactly for Fractions, returned as a float."""
    x = np.asarray(x).ravel().tolist()
    return float(max((abs(Fraction(a) - Fraction(b)) for a, b in zip(x, exact)), default=0))


# --------------------------------------------------------------------------------------
# hard input families (design/math.md, "Inputs that break naive algorithms")
# --------------------------------------------------------------------------------------
def _gaussian(d, rng, lam):
    return rng.standard_normal(d), lam


def _zeros_ramp(d, rng, lam):
    # d/2 zeros then the ramp a*(1..d/2), a = 2.25 lam / d: the zero cluster sweeps the ramp
    half = d // 2
    a = 2.25 * lam / d
    return np.concatenate([np.zeros(d - half), a * np.arange(1, half + 1)]), lam


def _huge_lam(d, rng, lam):
    # lam much larger than the spread of w
    w = rng.standard_normal(d)
    spread = float(np.ptp(w)) or 1.0
    return w, 50.0 * spread


def _clustered_jitter(d, rng, lam):
    # a few well separated clusters, each with a tiny jitter
    centers = np.array([-3.0, -1.0, 0.5, 2.0, 4.0])
    w = centers[rng.integers(0, centers.size, d)] + 1e-9 * rng.standard_normal(d)
    return rng.permutation(w), lam


def _sorted_no_pool(d, rng, lam):
    # gaps 3 lam/(d-1) > 2 lam/(d-1): z strictly increasing, no pooling (d singletons)
    step = 3.0 * lam / max(d - 1, 1)
    return step * np.arange(d), lam


def _reversed(d, rng, lam):
    # gaps lam/(d-1) < 2 lam/(d-1): z strictly decreasing, everything pools into one block; w descending
    step = lam / max(d - 1, 1)
    return step * np.arange(d)[::-1].copy(), lam


def _spike_ramp(d, rng, lam):
    # in z = sort(w) + v: a spike of height 2 lam/(d-1) followed by a ramp so shallow that the spike's
    # block absorbs the ramp one element at a time (in w: a tied pair, then steps just above 2 lam/(d-1))
    step = 2.0 * lam / max(d - 1, 1)
    slope = 2.0 * step / max(d, 1) ** 2
    w = np.concatenate([[0.0], (step + slope) * np.arange(d - 1)])
    return w[:d], lam


def _all_equal(d, rng, lam):
    return np.full(d, 0.7), lam


def _zero_one(d, rng, lam):
    return rng.integers(0, 2, d).astype(np.float64), lam


def _signed_zeros(d, rng, lam):
    # -0.0 and 0.0 mixed, with a few +-1 so that not everything is zero
    w = rng.choice(np.array([-0.0, 0.0, 0.0, -0.0, 1.0, -1.0]), d)
    return w, lam


def _huge_tiny(d, rng, lam):
    # magnitudes from 1e-30 to 1e30 in one vector (still finite in float32)
    w = np.sign(rng.standard_normal(d)) * 10.0 ** rng.uniform(-30, 30, d)
    return w, lam


def _float32_overflow(d, rng, lam):
    # float32 values near the overflow limit: float32 sums of them overflow
    top = float(np.finfo(np.float32).max)
    w = np.sign(rng.standard_normal(d)) * rng.uniform(0.5, 1.0, d) * top
    w = np.clip(w.astype(np.float32), -np.finfo(np.float32).max, np.finfo(np.float32).max)
    return w, 0.25 * top


def _integer_exact(d, rng, lam):
    # integer-valued w with an integer lam/(d-1): every float64 sum is exact, so partitions are exact
    w = rng.integers(-3 * d, 3 * d + 1, d).astype(np.float64)
    q = int(rng.integers(1, 4))
    return w, float(q * max(d - 1, 1))


#: name -> ``f(d, rng, lam) -> (w, lam)``. ``w`` is float64 of length ``d`` (float32 for
#: ``float32_overflow``); the returned ``lam`` is the input ``lam`` unless the family fixes it.
FAMILIES = {
    "gaussian": _gaussian,
    "zeros_ramp": _zeros_ramp,
    "huge_lam": _huge_lam,
    "clustered_jitter": _clustered_jitter,
    "sorted_no_pool": _sorted_no_pool,
    "reversed": _reversed,
    "spike_ramp": _spike_ramp,
    "all_equal": _all_equal,
    "zero_one": _zero_one,
    "signed_zeros": _signed_zeros,
    "huge_tiny": _huge_tiny,
    "float32_overflow": _float32_overflow,
    "integer_exact": _integer_exact,
}


def family(name: str, d: int, rng: np.random.Generator | int = 0, lam: float = 0.5) -> tuple[np.ndarray, float]:
    """Return ``(w, lam)`` of the hard input family ``name`` (a key of :data:`FAMILIES`) with size ``d``."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    w, lam = FAMILIES[name](d, rng, lam)
    return w, float(lam)
