r"""The ``cvxpy`` backend: ground truth from a generic conic solver, for small problems.

This backend exists to check the fast backends, so its solve shares nothing with them:
it does not sort and does not use the reduction to isotonic regression.

Formulation
-----------
Each row ``w`` (length ``d``) is solved as the convex quadratic program

.. math::

    \min_u \; \tfrac12 \|u - w\|^2 + \frac{\lambda}{d-1} \|D u\|_1 + \mu \|u\|_1,

where ``D`` is the sparse ``d(d-1)/2 x d`` matrix of all pairwise differences
``u_i - u_j`` (``i < j``), so ``||D u||_1 = sum_{i>j} |u_i - u_j|``. cvxpy turns the
1-norms into linear inequalities (``d(d-1)/2 + d`` auxiliary variables) and hands the QP
to Clarabel (interior point) with ``tol_gap_abs = tol_gap_rel = tol_feas = 1e-12``,
``tol_ktratio = 1e-10``, tight iterative refinement and at most 500 iterations. If that
ends in any other status than ``optimal`` (Clarabel occasionally stalls just short of
such tight tolerances and reports ``optimal_inaccurate``), the row is solved again at
``1e-10``; if that fails too, a RuntimeError names the status.

Conditioning: the row is solved in the variables ``u' = (u - c) / s`` with ``c`` the
median of ``w`` and ``s = max|w - c| + lam + l1``, i.e. with weights ``(w - c)/s``,
strengths ``lam/s`` and ``l1/s``, and the L1 term written ``||u' + c/s||_1`` (the prox is
not shift-equivariant when ``l1 > 0``, but this change of variables is exact). The
solution is mapped back as ``x = c + s u'``.

Polish
------
An interior-point solution is accurate to about ``1e-12 s`` where the problem is
non-degenerate, but only to about ``sqrt(1e-12) s ~ 1e-6 s`` where it is degenerate, i.e.
where two adjacent clusters would have exactly equal values (the common case for
integer data, ``{0, 1}`` data, or ``|w_1 - w_2| = 2 lam`` at ``d = 2``). Tied outputs also
come back slightly different. So each row is polished (:func:`polish`):

1. Cluster: sort the values and split where consecutive values differ by more than
   ``CLUSTER_RTOL * s = 1e-7 s``. With ``l1 > 0`` a cluster whose mean is within that
   tolerance of zero is the zero cluster.
2. Refine: on vectors constant on these clusters (in this order, with these signs) the
   objective is a smooth quadratic in the cluster values, minimized at
   ``y_g = mean_g(w) + lam (N_above - N_below) / (d - 1) - l1 sign_g`` (0 for the zero
   cluster), where ``N_above``/``N_below`` count the elements of the clusters above/below.
   Adjacent clusters whose refined values are out of order or within the tolerance are
   merged and the refinement repeated; this recovers the exact clusters of degenerate
   problems.
3. Check: the refined vector is kept only if it moves no value by more than
   ``REFINE_RTOL * s = 1e-4 s`` and does not raise the objective (evaluated pairwise)
   beyond rounding; otherwise the cluster means of step 1 are used.

4. Certify (``l1 = 0`` only): if :func:`wsprox.certify` (the KKT conditions, an O(d)
   check that shares no code with any solver) rejects the polished row, steps 1-3 are
   redone with the finer cluster tolerances ``1e-9 s`` and ``1e-11 s``; the first result
   that passes is kept, else the one with the smallest violation, and a RuntimeWarning
   says that the row's result is not certified (true clusters closer than ``1e-11 s``,
   below the solver's accuracy: ``[0, 3, 1e12]`` at ``lam = 1`` gives ``[2, 2, 1e12]``
   instead of ``[1, 3, 1e12 - 1]``). With ``l1 > 0`` there is no such check.

Tied outputs are then bit-identical, zeros are ``+0.0``, and labels are the cluster ids
``0..K-1`` in increasing order of value. Measured against exact rational answers on the
hard input families for ``d <= 200``, the values agree to a few float64 roundings of
``s`` (and to ``1e-6 s`` in any case). With ``l1 > 0`` (no certificate), distinct exact
values closer than ``1e-7 s`` are merged (for example magnitudes from ``1e-30`` to
``1e30`` in one row), so the clusters are the true ones only when the true gaps exceed
that; with ``l1 = 0`` the same holds below ``1e-11 s``. Cluster means are taken relative
to one of their members, so small clusters in a row of huge values keep their digits, and
a row whose values or strengths exceed ``1e150`` is solved in units of a power of two
(exact) so that the centring cannot overflow.

Size limit
----------
The QP has ``O(d^2)`` variables and constraints. Measured on the 2-core development
machine (one row, cvxpy's compilation and the polish included; the ranges are Gaussian
to integer-valued rows and an idle to a busy machine):

========  ===============  =============  ==============
``d``     ``l1 = 0``       ``l1 > 0``     peak memory
========  ===============  =============  ==============
200       0.4 s            0.6 s          0.25 GB
500       4.5 s            -              -
1000      28-40 s          36-72 s        1.4 GB
========  ===============  =============  ==============

The registry refuses ``d > 1000`` (``max_size``) with a ValueError before the solver
runs. Rows are solved one after another.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

#: Clarabel settings, tried in this order until one reaches the status ``optimal``.
SOLVER_OPTIONS = (
    {
        "tol_gap_abs": 1e-12,
        "tol_gap_rel": 1e-12,
        "tol_feas": 1e-12,
        "tol_ktratio": 1e-10,
        "max_iter": 500,
        "iterative_refinement_reltol": 1e-15,
        "iterative_refinement_abstol": 1e-15,
        "iterative_refinement_max_iter": 50,
    },
    {
        "tol_gap_abs": 1e-10,
        "tol_gap_rel": 1e-10,
        "tol_feas": 1e-10,
        "tol_ktratio": 1e-8,
        "max_iter": 500,
    },
)

#: Values closer than ``CLUSTER_RTOL * s`` are one cluster (see the module docstring).
CLUSTER_RTOL = 1e-7

#: Finer cluster tolerances tried, in order, when ``l1 = 0`` and the polish at
#: ``CLUSTER_RTOL`` fails :func:`wsprox.certify` (true gaps below ``CLUSTER_RTOL * s``).
FINER_CLUSTER_RTOLS = (1e-9, 1e-11)

#: A refined solution is kept only if no value moved by more than ``REFINE_RTOL * s``.
REFINE_RTOL = 1e-4


@functools.lru_cache(maxsize=4)
def _difference_matrix(d: int):
    """Sparse ``(d(d-1)/2, d)`` matrix whose rows are ``e_i - e_j`` for all ``i < j``."""
    import scipy.sparse as sp

    i, j = np.triu_indices(d, 1)
    m = i.size
    rows = np.concatenate([np.arange(m), np.arange(m)])
    cols = np.concatenate([i, j])
    vals = np.concatenate([np.ones(m), -np.ones(m)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(m, d))


def _objective(u: np.ndarray, w: np.ndarray, lam: float, l1: float) -> float:
    """``1/2 ||u - w||^2 + lam/(d-1) sum_{i<j} |u_i - u_j| + l1 ||u||_1`` (pairwise, in float64)."""
    d = w.shape[0]
    value = 0.5 * float(np.sum((u - w) ** 2)) + l1 * float(np.sum(np.abs(u)))
    if d > 1 and lam > 0.0:
        value += lam / (d - 1) * float(np.sum(np.abs(_difference_matrix(d) @ u)))
    return value


def _solve_row(w: np.ndarray, lam: float, l1: float) -> tuple[np.ndarray, float]:
    """Solve one float64 row with cvxpy/Clarabel; return the raw solution and the scale ``s``."""
    import cvxpy as cp

    d = w.shape[0]
    c = float(np.median(w))
    s = float(np.max(np.abs(w - c))) + lam + l1
    if s == 0.0:  # constant row, lam = l1 = 0: the identity
        return w.copy(), 1.0
    w_scaled = (w - c) / s
    u = cp.Variable(d)
    objective = 0.5 * cp.sum_squares(u - w_scaled)
    if lam > 0.0 and d > 1:
        objective = objective + (lam / s / (d - 1)) * cp.norm1(_difference_matrix(d) @ u)
    if l1 > 0.0:
        objective = objective + (l1 / s) * cp.norm1(u + c / s)
    problem = cp.Problem(cp.Minimize(objective))
    status = None
    for options in SOLVER_OPTIONS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "Solution may be inaccurate": handled below
                problem.solve(solver=cp.CLARABEL, **options)
        except cp.error.SolverError as exc:
            raise RuntimeError(f"cvxpy backend: Clarabel failed on a row of size d={d}: {exc}") from exc
        status = problem.status
        if status == cp.OPTIMAL and u.value is not None:
            return c + s * np.asarray(u.value, dtype=np.float64), s
    raise RuntimeError(f"cvxpy backend: Clarabel did not solve a row of size d={d} to optimality (status {status!r})")


def _refine(w, lam, l1, members, signs):
    """Exact minimizer of the objective over vectors constant on each cluster, clusters in this order.

    ``members`` lists the index arrays of the clusters in increasing order of value and
    ``signs`` their signs (-1, 0 or +1; 0 pins a cluster to zero, only used when
    ``l1 > 0``). On that set every pairwise ``|u_i - u_j|`` is linear, and setting the
    derivative with respect to cluster ``g``'s value ``y_g`` to zero gives
    ``y_g = mean_g(w) + lam (N_above - N_below) / (d - 1) - l1 sign_g``, where
    ``N_above``/``N_below`` count the elements of the clusters above/below ``g``.
    """
    d = w.shape[0]
    sizes = np.array([m.size for m in members], dtype=np.float64)
    below = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])
    above = d - below - sizes
    # each mean relative to one of its own members, so that a cluster of small values in a row
    # of huge ones keeps its digits (a singleton's mean is its weight, exactly)
    means = np.array([float(np.mean(w[m] - w[m[0]])) + float(w[m[0]]) for m in members])
    y = means + (lam / (d - 1) * (above - below) if d > 1 else 0.0) - l1 * signs
    return np.where(signs == 0, 0.0, y)


def polish(
    raw: np.ndarray, w: np.ndarray, lam: float, l1: float, scale: float, cluster_rtol: float = CLUSTER_RTOL
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a raw solver solution into exactly tied clusters; return ``(x, labels)``.

    1. Sort ``raw`` and split it into clusters where consecutive values differ by more
       than ``cluster_rtol * scale``. When ``l1 > 0``, a cluster whose mean is within
       that tolerance of zero is the zero cluster.
    2. Refine: compute the exact optimum over vectors constant on these clusters
       (:func:`_refine`); merge adjacent clusters whose refined values are out of order
       or closer than the tolerance (and, when ``l1 > 0``, move a signed cluster whose
       refined value has reached zero into the zero cluster), and repeat until nothing
       changes.
    3. Keep the refined values if they moved no value by more than ``REFINE_RTOL * scale``
       and do not increase the objective (beyond rounding); otherwise fall back to the
       cluster means of step 1.

    Labels number the distinct final values ``0..K-1`` in increasing order.
    """
    d = raw.shape[0]
    tol = cluster_rtol * scale
    order = np.argsort(raw, kind="stable")
    xs = raw[order]
    cluster = np.zeros(d, np.int64)
    if d > 1:
        cluster[1:] = np.cumsum(np.diff(xs) > tol)
    bounds = np.flatnonzero(np.diff(cluster)) + 1
    members = np.split(order, bounds)
    means = np.array([float(np.mean(raw[m])) for m in members])

    if l1 > 0.0:
        signs = np.where(np.abs(means) <= tol, 0.0, np.sign(means))
    else:
        signs = np.ones(len(members))  # unused when l1 = 0
    fallback = np.where(signs == 0, 0.0, means)
    fallback_members = members

    # step 2: refine and merge until the refined values are strictly increasing by > tol
    while True:
        y = _refine(w, lam, l1, members, signs)
        if l1 > 0.0:
            # a signed cluster that refines to (or past) zero belongs to the zero cluster
            flip = (signs != 0) & (signs * y <= tol)
            if flip.any():
                signs[flip] = 0.0
                continue
        close = np.flatnonzero(np.diff(y) <= tol)
        if close.size == 0:
            break
        merge_with_previous = np.zeros(len(members), bool)
        merge_with_previous[close + 1] = True
        groups = np.cumsum(~merge_with_previous) - 1
        merged_members, merged_signs = [], []
        for k in range(groups[-1] + 1):
            parts = np.flatnonzero(groups == k)
            merged_members.append(np.concatenate([members[g] for g in parts]))
            part_signs = signs[parts]
            merged_signs.append(part_signs[0] if np.all(part_signs == part_signs[0]) else 0.0)
        members, signs = merged_members, np.array(merged_signs)

    refined = np.empty(d)
    for value, m in zip(y, members):
        refined[m] = value
    # step 3: accept the refinement only if it is a small move that does not worsen the objective;
    # objectives in units of a power of two near the largest magnitude (exact scaling; the
    # objective is homogeneous of degree 2), so that they stay finite near the float64 limit
    largest = max(float(np.max(np.abs(w))) if d else 0.0, lam, l1)
    unit = math.ldexp(1.0, -math.frexp(largest)[1]) if largest > 1.0 else 1.0  # only ever scale down
    f_raw = _objective(raw * unit, w * unit, lam * unit, l1 * unit)
    f_refined = _objective(refined * unit, w * unit, lam * unit, l1 * unit)
    moved = float(np.max(np.abs(refined - raw))) if d else 0.0
    scale_u = scale * unit
    if moved > REFINE_RTOL * scale or f_refined > f_raw + 1e-12 * (scale_u * scale_u * d + abs(f_raw)):
        y, members = fallback, fallback_members
        y = np.maximum.accumulate(y)  # guard the order against rounding

    out = np.empty(d)
    labels = np.empty(d, np.int64)
    y = y + 0.0  # no -0.0
    label_of_cluster = np.concatenate([[0], np.cumsum(y[1:] != y[:-1])]) if len(y) else np.zeros(0, np.int64)
    for value, label, m in zip(y, label_of_cluster, members):
        out[m] = value
        labels[m] = label
    return out, labels


def solve(w, lam, l1, return_clusters):
    """Solve every row of the float64 2-D array ``w`` (see ``register_backend``).

    Raises
    ------
    RuntimeError
        If Clarabel does not reach the status ``optimal`` on some row.
    """
    w = np.asarray(w, dtype=np.float64)
    n, d = w.shape
    lam = float(lam)
    l1 = float(l1)
    out = np.empty((n, d), np.float64)
    labels = np.empty((n, d), np.int64)
    for r in range(n):
        if d == 0:
            continue
        with np.errstate(under="ignore"):  # subnormal values; np.seterr(under="raise") must not matter
            out[r], labels[r] = _solve_scaled_row(np.ascontiguousarray(w[r]), lam, l1)
    return out, (labels if return_clusters else None)


def _solve_scaled_row(row: np.ndarray, lam: float, l1: float) -> tuple[np.ndarray, np.ndarray]:
    """Solve and polish one row, in units of a power of two where its values come near the float64 limit.

    The prox is positively homogeneous (``prox_{u lam, u l1}(u w) = u prox_{lam, l1}(w)``)
    and scaling by a power of two is exact, so the centring and the QP data stay finite.
    With ``l1 = 0`` a polish that fails :func:`wsprox.certify` (true clusters closer than
    ``CLUSTER_RTOL * s``) is redone at the finer tolerances ``FINER_CLUSTER_RTOLS``; the
    first that passes is kept, else the one with the smallest violation, with a
    RuntimeWarning.
    """
    from .._certificate import certify

    largest = max(float(np.max(np.abs(row))), lam, l1)
    unit = math.ldexp(1.0, -math.frexp(largest)[1]) if largest > 1e150 else 1.0
    w_u, lam_u, l1_u = row * unit, lam * unit, l1 * unit
    raw, scale = _solve_row(w_u, lam_u, l1_u)
    x, labels = polish(raw, w_u, lam_u, l1_u, scale)
    if l1 == 0.0 and w_u.size > 1:
        best = (certify(w_u, x, lam_u).max_violation, x, labels)
        for cluster_rtol in FINER_CLUSTER_RTOLS:
            if best[0] <= 1.0:
                break
            x, labels = polish(raw, w_u, lam_u, l1_u, scale, cluster_rtol)
            best = min(best, (certify(w_u, x, lam_u).max_violation, x, labels), key=lambda item: item[0])
        violation, x, labels = best
        if violation > 1.0:
            warnings.warn(
                f"cvxpy backend: the solution of a row of size d={row.size} fails wsprox.certify (violation "
                f"{violation:.3g} times its tolerance): some of its true clusters are closer than "
                f"{FINER_CLUSTER_RTOLS[-1]:g} times the row's spread, below the interior-point solver's accuracy; "
                "it is not a ground truth for this row (use backend='numba')",
                RuntimeWarning,
                stacklevel=2,
            )
    return x / unit, labels
