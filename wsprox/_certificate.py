"""An O(d) optimality certificate for a claimed prox that needs no reference solver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._api import _as_rows
from ._validation import as_host_array, check_finite, check_strength, is_device_array, normalize_axis, resolve_dtypes

__all__ = ["Certificate", "certify"]

_EPS64 = float(np.finfo(np.float64).eps)
_TINY64 = float(np.finfo(np.float64).smallest_subnormal)  # 2**-1074


@dataclass(frozen=True, eq=False)
class Certificate:
    """Result of :func:`certify`. True in a boolean context exactly when ``ok`` is.

    Attributes
    ----------
    ok : bool
        Every problem passed: ``max_violation <= 1``.
    max_violation : float
        The largest violation over all conditions and problems, in units of each
        problem's tolerance (0 for an exact solution; above 1 means rejected).
    ok_per_problem : numpy.ndarray of bool
        One entry per problem: shape ``()`` for ``axis=None``, else ``w``'s shape with
        ``axis`` removed.
    violation_per_problem : numpy.ndarray of float64
        The largest violation of each problem (same shape as ``ok_per_problem``).
    """

    ok: bool
    max_violation: float
    ok_per_problem: np.ndarray
    violation_per_problem: np.ndarray

    def __bool__(self) -> bool:
        return bool(self.ok)


def certify(w, x, lam, *, axis=None, rtol=1e-9) -> Certificate:
    r"""Check that ``x`` is the prox of ``w`` (with ``l1 = 0``) without solving anything.

    Verifies the optimality conditions of the isotonic-regression form of the prox (on
    the whole row and cluster by cluster), and that no weight moved by more than
    ``lam``, in :math:`O(d \log d)` (one sort) and :math:`O(d)` memory per problem, in
    float64.

    Parameters
    ----------
    w : array_like
        The weights given to :func:`wsprox.prox` (same dtype rules: real floating,
        integer or bool; finite).
    x : array_like
        The claimed prox, of ``w``'s shape (any real dtype; its rounding is allowed for,
        see Notes).
    lam : float
        The strength :math:`\lambda \ge 0` used.
    axis : int or None, optional
        As in :func:`wsprox.prox`: None (default) for one problem made of the whole
        array, an int for one problem per 1-D slice along that axis.
    rtol : float, optional
        Relative tolerance (default ``1e-9``), see Notes. Must be at least a few times
        ``d * 2**-53`` for float64 rounding to pass.

    Returns
    -------
    Certificate
        ``ok``, ``max_violation`` and the per-problem results.

    Raises
    ------
    TypeError
        Unsupported dtype of ``w`` or ``x``, device arrays, non-real ``lam``/``rtol``,
        non-integer ``axis``.
    ValueError
        ``x`` not of ``w``'s shape, non-finite values, negative or non-finite
        ``lam``/``rtol``. ``numpy.exceptions.AxisError`` for an out-of-bounds axis.

    See Also
    --------
    wsprox.prox : computes the prox that this function checks.

    Notes
    -----
    Sort ``w`` ascending (stably; ``x`` follows the same permutation) into
    :math:`w_{(0)} \le \dots \le w_{(d-1)}` and let :math:`z_k = w_{(k)} + v_k` with
    :math:`v_k = \lambda (d - 1 - 2k)/(d - 1)`. The prox is the isotonic regression of
    :math:`z` mapped back, and :math:`x` (in sorted order) is that isotonic regression
    if and only if, with :math:`S_t = \sum_{k \le t} (z_k - x_k)`,

    1. :math:`x_0 \le x_1 \le \dots \le x_{d-1}` (primal feasibility),
    2. :math:`S_t \ge 0` for all :math:`t` (dual feasibility),
    3. :math:`S_t = 0` wherever :math:`x_t < x_{t+1}` (complementary slackness),
    4. :math:`S_{d-1} = 0`.

    These are the KKT conditions of :math:`\min_{x_0 \le \dots \le x_{d-1}} \frac12
    \|x - z\|^2`: conditions 2 and 4 say that :math:`z - x` lies in the polar cone of
    the monotone cone, and by Abel summation :math:`\langle z - x, x\rangle =
    \sum_t S_t (x_t - x_{t+1}) + S_{d-1} x_{d-1}`, which vanishes by 3 and 4. Tied
    weights must get tied outputs, so the order chosen among ties does not matter.

    Each condition is checked to within the tolerance

    .. math::

        \tau = \mathrm{rtol} \sum_k |w_{(k)} - c|
        + \min(\mathrm{rtol}, 8 d \varepsilon_{64}) \sum_k |v_k|
        + 2 \varepsilon_x \sum_k |x_k|
        + 2 \varepsilon_{64} \sum_k \left(|w_{(k)} - c| + |v_k|\right)
        + 2 d (t_x + d\, t_{64}),

    where :math:`c` is the median of ``w``, :math:`\varepsilon_x` the machine epsilon of
    ``x``'s dtype and :math:`t_x` its smallest subnormal (both 0 for integer dtypes),
    :math:`\varepsilon_{64} = 2^{-52}` and :math:`t_{64} = 2^{-1074}`. The first term is
    the requested relative accuracy on the weights. The velocities enter only at float64
    accuracy, a few :math:`d` roundings of their sum (what summing them costs a solver),
    capped by ``rtol``: a tolerance relative to them would let a row whose :math:`\lambda`
    dwarfs its weights, a single cluster, take any value of the right order. The last term
    allows the absolute rounding of values below the normal range (subnormal results of
    subnormal inputs). The other rounding terms allow each
    :math:`x_k` to be off by its own rounding (so float32 results of float32 inputs,
    the float64 prox rounded to float32, pass) and by the float64 rounding of forming
    :math:`z_k`, which matters when :math:`z` is nearly constant (for example when a
    single cluster absorbs a ramp whose steps barely exceed :math:`2\lambda/(d-1)`)
    and the first term alone would be below what any float64 computation can reach.
    Conditions 2-4 compare :math:`|S_t|` (or :math:`-S_t`) with :math:`\tau`; condition 1
    compares each decrease :math:`x_t - x_{t+1}` with :math:`\tau/d`. A violation is
    reported in units of its tolerance, and a problem passes when none exceeds 1. All
    sums are float64 after subtracting the median of ``w`` (the prox is
    shift-equivariant), so rounding in the certificate itself stays near
    :math:`d \cdot 2^{-53} \sum_k |z_k - x_k|`. Every condition is positively homogeneous
    in :math:`(w, x, \lambda)`, so a row whose values come near the float64 limit (sums
    of about :math:`8 d \max(|w|, |x|, \lambda) > 10^{300}`) is checked in units of a power
    of two, an exact scaling, instead of overflowing.

    The partial sums are checked against a tolerance set by the whole row: on a long row
    it is far looser than the accuracy asked of each value (at :math:`d = 10^6` Gaussian
    weights, :math:`\tau \approx 10^{-3}` at the default ``rtol``). Conditions 3 and 4
    together say that every cluster :math:`B` of ``x`` (a run of equal values) is the mean
    of its :math:`z_k`; this is checked again cluster by cluster, with the terms of
    :math:`\tau` restricted to the cluster:

    5. :math:`\left|\sum_{k \in B} (z_k - x_k)\right| \le \mathrm{rtol}\, W_B
       + \min(\mathrm{rtol}, 8 d \varepsilon_{64})\, V_B + (2 \varepsilon_x + 8 \varepsilon_{64}) X_B
       + 2 \varepsilon_{64} (W_B + V_B) + 4 (\lceil \log_2 d \rceil + 1)\,
       \varepsilon_{64} \sum_k (|w_{(k)} - c| + |v_k|) + 2 d (t_x + d\, t_{64})`,

    with :math:`W_B`, :math:`V_B`, :math:`X_B` the sums of :math:`|w_{(k)} - c|`,
    :math:`|v_k|` and :math:`|x_k|` over :math:`B`. The fifth term is the rounding of a
    cluster sum taken as a difference of prefix sums over the row (a tree of depth
    :math:`\log_2 d`): set by the whole row, but not scaled by ``rtol``. The term in
    :math:`X_B` allows a few float64 roundings of each value itself (a solver that
    averages uncentred values, such as scipy's isotonic regression on weights near
    :math:`7 \cdot 10^9`). So an error of a cluster's value is rejected when it exceeds
    about ``rtol`` times the cluster's distance from the median or, closer to the
    median, the row's rounding term divided by :math:`|B|` (which grows like
    :math:`d \log d` times the mean distance from the median): far tighter than
    :math:`\tau` on long rows, but not relative to each value alone.

    Condition 5 does not see a value moved within its cluster's tolerance, and values
    far smaller than the row's spread (say, two weights near 0 in a row whose median is
    :math:`10^{17}`) get a tolerance of the order of ``rtol`` times that median. A
    sixth condition, necessary for the prox by Moreau's identity (:math:`w - x` lies in
    :math:`\lambda` times the permutahedron, so no weight moves by more than
    :math:`\lambda`), is checked with a tolerance local to each cluster:

    6. :math:`|x_k - w_{(k)}| \le \lambda + \mathrm{rtol}\,(\lambda + s_B) + 2
       \varepsilon_x |x_k| + 2 \varepsilon_{64} (|w_{(k)}| + \lambda + 2 |B|\, s_B) + 2 (t_x + d\, t_{64})`,

    with :math:`s_B` the range of the weights in :math:`k`'s cluster. Violations of
    conditions 5 and 6 are reported, like the others, in units of their tolerances.

    Because condition 3 applies at every strict increase, the clusters of ``x`` must be
    exactly tied (as every wsprox backend returns them): a solution whose tied values
    differ by rounding noise is rejected.

    Examples
    --------
    >>> import numpy as np
    >>> import wsprox
    >>> w = np.array([0.0, 1.0, 5.0])
    >>> bool(wsprox.certify(w, wsprox.prox(w, 1.0), 1.0))
    True
    >>> wsprox.certify(w, np.array([1.0, 1.0, 4.5]), 1.0).ok
    False
    """
    lam = check_strength(lam, "lam")
    rtol = check_strength(rtol, "rtol")
    if is_device_array(w) or is_device_array(x):
        raise TypeError("certify takes host (numpy) arrays; copy device arrays to the host first")
    w_arr = as_host_array(w, "w")
    x_arr = as_host_array(x, "x")
    resolve_dtypes(w_arr.dtype, "w")
    resolve_dtypes(x_arr.dtype, "x")
    if x_arr.shape != w_arr.shape:
        raise ValueError(f"x has shape {x_arr.shape}, expected w's shape {w_arr.shape}")
    ax = normalize_axis(axis, w_arr.ndim)
    check_finite(w_arr, "w")
    check_finite(x_arr, "x")

    if ax is None:  # one shared element order for w and x, whatever their memory layouts
        w_rows, moved_shape = w_arr.reshape(1, -1), (1, w_arr.size)
        x_rows = x_arr.reshape(1, -1)
    else:
        w_rows, moved_shape = _as_rows(w_arr, ax)
        x_rows, _ = _as_rows(x_arr, ax)
    batch_shape = () if ax is None else tuple(moved_shape[:-1])
    # the rounding of x's dtype: relative (eps) and, below its normal range, absolute (tiny)
    eps_x, tiny_x = 0.0, 0.0  # integer and bool results are exact
    if x_arr.dtype.kind == "f":
        eps_x, tiny_x = float(np.finfo(x_arr.dtype).eps), float(np.finfo(x_arr.dtype).smallest_subnormal)
    with np.errstate(under="ignore"):  # subnormal values are allowed for; np.seterr(under="raise") must not matter
        violation = _violations(w_rows, x_rows, lam, rtol, eps_x, tiny_x)

    ok_rows = violation <= 1.0
    max_violation = float(violation.max()) if violation.size else 0.0
    return Certificate(
        ok=bool(ok_rows.all()),
        max_violation=max_violation,
        ok_per_problem=ok_rows.reshape(batch_shape),
        violation_per_problem=violation.reshape(batch_shape),
    )


def _violations(
    w_rows: np.ndarray, x_rows: np.ndarray, lam: float, rtol: float, eps_x: float, tiny_x: float
) -> np.ndarray:
    """Largest violation (in units of the tolerance) of each row; rows are problems."""
    n, d = w_rows.shape
    if n == 0 or d == 0:
        return np.zeros(n)
    order = np.argsort(w_rows, axis=1, kind="stable")
    ws = np.take_along_axis(w_rows, order, axis=1).astype(np.float64)
    xs = np.take_along_axis(x_rows, order, axis=1).astype(np.float64)
    # every condition is homogeneous: rows near the float64 limit are checked in units of a
    # power of two (exact), so that the sums below cannot overflow
    unit = _overflow_units(ws, xs, lam)
    ws *= unit
    xs *= unit
    lam_rows = lam * unit
    center = ws[:, d // 2 : d // 2 + 1].copy()
    coef = (d - 1 - 2 * np.arange(d, dtype=np.float64)) / (d - 1) if d > 1 else np.zeros(1)
    velocity = lam_rows * coef
    z = (ws - center) + velocity
    weight_spread = np.abs(ws - center).sum(axis=1)
    velocity_sum = np.abs(velocity).sum(axis=1)
    # the velocities enter at float64 accuracy (a few d ulps of their sum, what summing them
    # costs a solver), capped by rtol: a relative tolerance on them would let a row whose lam
    # dwarfs its weights take any value of the right order for its single cluster
    accuracy = rtol * weight_spread + min(rtol, 8.0 * d * _EPS64) * velocity_sum
    rounding = 2.0 * eps_x * np.abs(xs).sum(axis=1) + 2.0 * _EPS64 * (weight_spread + velocity_sum)
    rounding += 2.0 * d * (tiny_x + d * _TINY64)  # absolute rounding below the normal ranges (subnormals)
    tol = (accuracy + rounding)[:, None]

    xc = xs - center
    partial = np.cumsum(z - xc, axis=1)
    with np.errstate(over="ignore"):
        worst = np.maximum(-partial, 0.0) / tol  # condition 2
        worst[:, -1] = np.abs(partial[:, -1]) / tol[:, 0]  # condition 4
        step = xs[:, 1:] - xs[:, :-1]
        complementary = np.where(step > 0, np.abs(partial[:, :-1]), 0.0) / tol  # condition 3
        decrease = np.maximum(-step, 0.0) * d / tol  # condition 1
    result = worst.max(axis=1)
    if d > 1:
        result = np.maximum(result, np.maximum(complementary.max(axis=1), decrease.max(axis=1)))
    # a solver's sums over a block may come from differences of prefix sums over the row
    # (a tree of depth log2 d): their rounding is set by the whole row, but not by rtol
    row_rounding = 4.0 * (np.ceil(np.log2(d)) + 1.0) * _EPS64 * (weight_spread + velocity_sum)
    row_rounding += 2.0 * d * (tiny_x + d * _TINY64)
    blocks = _block_violations(ws - center, xc, velocity, xs, row_rounding, rtol, eps_x)
    result = np.maximum(result, blocks)
    return np.maximum(result, _displacement_violations(ws, xs, lam_rows, rtol, eps_x, tiny_x).max(axis=1))


def _cluster_starts(xs: np.ndarray) -> np.ndarray:
    """``(n, d)`` bool: where a cluster (a run of equal values of each sorted row) starts.

    Every row starts a cluster, so in the flattened array no cluster crosses rows.
    """
    starts = np.ones(xs.shape, dtype=bool)
    starts[:, 1:] = xs[:, 1:] != xs[:, :-1]
    return starts


def _block_violations(
    wc: np.ndarray, xc: np.ndarray, velocity: np.ndarray, xs: np.ndarray, row_rounding, rtol: float, eps_x: float
) -> np.ndarray:
    """Condition 5, ``sum_B (z - x) = 0`` on every cluster ``B`` of ``x``, in units of a tolerance local to ``B``.

    All arrays are ``(n, d)`` and sorted by ``w`` (rows are problems): ``wc`` and ``xc``
    centred on the row's median, ``velocity`` the :math:`v_k`, ``xs`` the uncentred ``x``
    (for its rounding); ``row_rounding`` is ``(n,)``. Returns the largest violation of
    each row.
    """
    n, d = xs.shape
    starts = _cluster_starts(xs)
    first = np.flatnonzero(starts)
    rows = first // d

    def block_sums(values):
        return np.add.reduceat(values.reshape(-1), first)

    imbalance = np.abs(block_sums((wc + velocity) - xc))
    weights, velocities = block_sums(np.abs(wc)), block_sums(np.abs(velocity))
    tol = rtol * weights + min(rtol, 8.0 * d * _EPS64) * velocities
    magnitudes = block_sums(np.abs(xs))  # a solver working on uncentred values rounds at their magnitude
    tol += (2.0 * eps_x + 8.0 * _EPS64) * magnitudes + 2.0 * _EPS64 * (weights + velocities) + row_rounding[rows]
    with np.errstate(over="ignore"):
        violation = imbalance / tol
    result = np.zeros(n)
    np.maximum.at(result, rows, violation)
    return result


def _overflow_units(ws: np.ndarray, xs: np.ndarray, lam: float) -> np.ndarray:
    """Per row, ``(n, 1)``: 1.0, or a power of two that brings the row's sums below about ``1e300``.

    The partial sums reach about ``4 d max(|w|, |x|, lam)``; scaling a row by a power of
    two is exact (values below about ``1e-300`` times the factor flush to zero, far below
    the tolerance of such a row).
    """
    d = ws.shape[1]
    largest = np.maximum(np.maximum(np.abs(ws).max(axis=1), np.abs(xs).max(axis=1)), lam)
    unit = np.ones(ws.shape[0])
    huge = largest > 1e300 / (8.0 * d)
    if huge.any():
        unit[huge] = np.ldexp(1.0, -np.frexp(largest[huge])[1] - int(np.ceil(np.log2(8.0 * d))))
    return unit[:, None]


def _displacement_violations(
    ws: np.ndarray, xs: np.ndarray, lam, rtol: float, eps_x: float, tiny_x: float
) -> np.ndarray:
    """Condition 6, ``|x_k - w_k| <= lam``, in units of a tolerance local to each cluster of ``x``.

    ``ws`` and ``xs`` are sorted by ``w`` (rows are problems); ``lam`` a float or an
    ``(n, 1)`` array (per row). A cluster is a run of equal ``xs``; its spread is the
    range of its weights.
    """
    n, d = ws.shape
    starts = _cluster_starts(xs)
    first = np.flatnonzero(starts)
    cluster = np.cumsum(starts.reshape(-1)) - 1
    flat_w = ws.reshape(-1)
    last = np.append(first[1:], flat_w.size) - 1
    spread = (flat_w[last] - flat_w[first])[cluster].reshape(n, d)  # ws is sorted within each row
    size = (last - first + 1)[cluster].reshape(n, d).astype(np.float64)
    tol = rtol * (lam + spread) + 2.0 * eps_x * np.abs(xs) + 2.0 * _EPS64 * (np.abs(ws) + lam + 2.0 * size * spread)
    tol += 2.0 * (tiny_x + d * _TINY64)  # > 0; a subnormal lam / (d - 1) is off by up to d/2 units of 2**-1074
    with np.errstate(over="ignore", invalid="ignore"):
        excess = np.abs(xs - ws) - lam
        return np.maximum(excess, 0.0) / tol
