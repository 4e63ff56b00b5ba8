"""The public numpy API: validation, reshaping and dispatch around the backends."""

from __future__ import annotations

import numpy as np

from ._registry import get_backend
from ._validation import (
    as_host_array,
    check_finite,
    check_out,
    check_strength,
    is_device_array,
    normalize_axis,
    resolve_dtypes,
)

__all__ = ["prox", "penalty"]


def prox(w, lam, *, l1=0.0, axis=None, backend="auto", out=None, return_clusters=False):
    r"""Proximal mapping of the weight-sharing regularizer (plus an optional L1 term).

    Computes

    .. math::

        \operatorname{prox}(w) = \arg\min_u \tfrac12 \|u - w\|^2 + \lambda R(u)
        + \mu \|u\|_1, \qquad R(u) = \frac{1}{d-1} \sum_{i>j} |u_i - u_j|,

    exactly (up to floating-point rounding), for one vector or for every 1-D slice of an
    array.

    Parameters
    ----------
    w : array_like or device array
        The weights: anything numpy converts, or a GPU array (an object with
        ``__cuda_array_interface__``: torch CUDA tensors, CuPy and numba device arrays),
        which is solved on its device by a backend that takes device arrays
        (``"cuda"`` by default) and gives a result of the same kind. float32 and float64
        are computed and returned in their own dtype (sums are always accumulated in
        float64); float16 is computed in float32 and returned as float16; bool and
        integer inputs give float64. Complex, object, string and other dtypes raise
        TypeError. Must be finite. Never modified (unless it is also passed as ``out``).
    lam : float
        Strength :math:`\lambda \ge 0` of the weight-sharing term. ``lam=0`` returns
        ``w`` (soft-thresholded if ``l1 > 0``).
    l1 : float, optional
        Strength :math:`\mu \ge 0` of an added L1 term. Default 0.
    axis : int or None, optional
        None (default): the whole array is one vector of ``d = w.size`` weights, as
        when regularizing a flattened layer. An int (negative counts from the end):
        every 1-D slice along that axis is an independent problem.
    backend : str, optional
        A registered backend (see :func:`wsprox.backends`), or ``"auto"`` (default):
        ``"numba"`` for host arrays, ``"cuda"`` for device arrays.
    out : numpy.ndarray or device array, optional
        Where to write the result: same shape as ``w`` and the output dtype (in either
        byte order), writeable, and of ``w``'s kind (a device array for device input).
        May be ``w`` itself. Left untouched if the call raises.
    return_clusters : bool, optional
        Also return the weight-sharing groups.

    Returns
    -------
    x : numpy.ndarray or device array
        The prox, of ``w``'s shape (``out`` if given); of ``w``'s kind for device input.
    labels : numpy.ndarray or device array of int64
        Only with ``return_clusters=True``: for each problem, the groups of equal
        output value numbered ``0..K-1`` in increasing order of value, in ``w``'s shape.

    Raises
    ------
    TypeError
        Unsupported dtype of ``w``, non-real ``lam``/``l1``, non-integer ``axis``,
        non-bool ``return_clusters``, non-str ``backend``, an ``out`` of the wrong type
        or dtype.
    ValueError
        Non-finite values in ``w`` (the message gives their count and the first
        index), a masked array ``w`` with masked entries, negative or non-finite
        ``lam``/``l1``, an unknown or unavailable backend, a backend that does not
        take arrays of ``w``'s kind, a problem too large for the backend, ``out`` of
        the wrong shape, read-only, or a masked array with masked entries.
        ``numpy.exceptions.AxisError`` (a ValueError) for an out-of-bounds axis.
    RuntimeError
        A backend returned a result of the wrong type, shape or dtype (the message
        names it); nothing is written to ``out``.

    See Also
    --------
    penalty : the regularizer R itself.
    backends : the registered solvers.

    Notes
    -----
    **Reduction to isotonic regression.** The optimum keeps the order of ``w``, and
    on the cone of vectors with that order :math:`R` is linear. With
    :math:`x_0 \le \dots \le x_{d-1}` the sorted weights and velocities
    :math:`v_k = \lambda (d - 1 - 2k)/(d - 1)`, the prox is the isotonic (non-decreasing)
    regression of :math:`z = x + v`, mapped back to the original order. The result is
    piecewise constant: each block of pooled weights takes the mean of :math:`z` over
    the block, and the blocks are the weight-sharing clusters. Adding :math:`\mu\|u\|_1`
    soft-thresholds the result: :math:`\operatorname{sign}(a)\max(|a| - \mu, 0)`.
    Tied inputs always share a cluster.

    **Accuracy.** Sums are accumulated in float64. The ``numba`` backend sums each
    block relative to its own middle element, so for float64 data each output of an
    exact cluster :math:`B` is within one ulp plus a few units of :math:`2^{-53} |B|
    (s_B + \lambda)` of the exact prox, :math:`s_B` the largest distance from a
    member's weight to the cluster's value: the rest of the row, however large, does
    not matter. That is the guarantee; outputs far from 0 are usually correctly rounded
    or one ulp off, but outputs near 0 are off by the absolute term (``prox([-1., 5, 2,
    -3, -4, -3], 5.0)`` gives ``-0.7999999999999998``, two ulps from ``-0.8``), and
    where :math:`\lambda/(d-1)` is not a float64 number two adjacent exact clusters with
    equal values can come out as two clusters one ulp apart (a tie the rounding split;
    both are within the bound). The ``cuda``
    backend sums relative to each tile's middle element inside a tile and to the row
    median between tiles (tile offsets compensated and scanned outward from the
    median); its error is at most two ulps of
    the output plus a few units of :math:`2^{-53} (T s_T / |B| + \max_{i \in B} |w_i - \operatorname{median}(w)| + s_T +
    \lambda)`, :math:`T` the tile size (1024) and :math:`s_T` the largest range of the
    weights of a tile (:math:`T` consecutive sorted weights) that :math:`B` touches,
    whatever :math:`d`; :math:`B` is the element's exact cluster or the cluster ``cuda``
    returned, whichever gives the larger bound (rounding that changes a pooling decision
    merges blocks, and the merged block carries the error of its tiles). The pooling
    decisions come from those sums; the value of a returned block of at most 16 weights
    (``cuda_backend.LOCAL``), or of equal weights, is summed directly as on the CPU, so
    rows of singletons (usual at the small strengths of training) get ``numba``'s values
    (its bits, except where a GPU's compiler fuses a multiply and an add into one
    rounding). Where the error of the tile sums exceeds the gaps between blocks (rows
    of huge dynamic range inside a tile), ``cuda``'s output can decrease along the sort
    by up to the error, and its cluster ids number the runs of equal values in sorted
    order.
    For float32 data each output is within one float32 ulp of the
    exact prox of the float32 input (plus the float64 error above); the number of
    clusters in float32 is decided by rounding and is not promised to be exact.
    Integer-valued data with an integer :math:`\lambda/(d-1)` is pooled exactly while
    the partial sums stay below :math:`2^{53}/d^2`.

    The result is deterministic: the same input gives bit-identical output.

    Examples
    --------
    >>> import numpy as np
    >>> import wsprox
    >>> wsprox.prox(np.array([0.0, 1.0, 5.0]), 1.0)
    array([1., 1., 4.])
    >>> x, labels = wsprox.prox(np.array([0.0, 1.0, 5.0]), 2.0, return_clusters=True)
    >>> x, labels
    (array([1.5, 1.5, 3. ]), array([0, 0, 1]))
    """
    lam = check_strength(lam, "lam")
    l1 = check_strength(l1, "l1")
    if not isinstance(return_clusters, (bool, np.bool_)):
        raise TypeError(f"return_clusters must be a bool, got {type(return_clusters).__name__}")
    if is_device_array(w):
        from .solvers.cuda_backend import prox_device

        return prox_device(w, lam, l1=l1, axis=axis, backend=backend, out=out, return_clusters=return_clusters)
    arr = as_host_array(w)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    compute_dtype, out_dtype = resolve_dtypes(arr.dtype)
    ax = normalize_axis(axis, arr.ndim)
    if out is not None:
        check_out(out, arr.shape, out_dtype)
    solver = get_backend("numba" if backend == "auto" else backend)
    if "numpy" not in solver.array_kinds:
        raise ValueError(f"backend {solver.name!r} does not accept numpy arrays (it takes {solver.array_kinds})")
    check_finite(arr)

    rows, moved_shape = _as_rows(arr, ax)
    n, d = rows.shape
    solver.check_size(d)
    if compute_dtype.name not in solver.dtypes:
        compute_dtype = np.dtype("float64" if "float64" in solver.dtypes else solver.dtypes[0])
    rows = rows.astype(compute_dtype, copy=False)

    if n == 0 or d == 0:
        x = np.empty((n, d), compute_dtype)
        labels = np.zeros((n, d), np.int64)
    elif lam == 0.0 or d == 1:
        x = _soft_threshold(rows, l1) if l1 > 0 else rows.copy()
        labels = None
    else:
        result = solver.solve(rows, lam, l1, bool(return_clusters))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise RuntimeError(
                f"backend {solver.name!r} returned {type(result).__name__}, expected a tuple (x, labels or None)"
            )
        x, labels = result
        _check_backend_result(solver.name, x, labels, rows, return_clusters)
    x = x.astype(out_dtype, copy=False)
    if return_clusters and (labels is None or x.dtype != compute_dtype):
        labels = labels_from_values(x)
    elif return_clusters:
        labels = labels.astype(np.int64, copy=False)  # a backend's int32 or unsigned ids: the documented dtype

    result = _from_rows(x, moved_shape, ax, arr)
    if out is not None:
        np.copyto(out, result)
        result = out
    elif result is arr or np.shares_memory(result, arr):
        result = result.copy()
    if return_clusters:
        return result, _from_rows(labels, moved_shape, ax, arr)
    return result


def penalty(w, *, axis=None):
    r"""The weight-sharing regularizer :math:`R(w) = \frac{1}{d-1}\sum_{i>j}|w_i - w_j|`.

    Parameters
    ----------
    w : array_like
        Real, finite values (same dtype rules as :func:`prox`); computed in float64.
    axis : int or None, optional
        None (default): the whole array is one vector. An int: R of every 1-D slice
        along that axis.

    Returns
    -------
    float or numpy.ndarray
        A Python float for ``axis=None``, else a float64 array of ``w``'s shape with
        ``axis`` removed. R is 0 for ``d <= 1``.

    Raises
    ------
    TypeError, ValueError
        As in :func:`prox` for bad dtypes, non-finite values and bad axes.

    Notes
    -----
    After an ascending sort :math:`x_0 \le \dots \le x_{d-1}`,
    :math:`R(w) = \frac{1}{d-1}\sum_k (2k - d + 1)\, x_k`, an :math:`O(d \log d)`
    computation. The coefficients sum to zero, so the median is subtracted first for
    accuracy.

    Examples
    --------
    >>> import wsprox
    >>> wsprox.penalty([0.0, 1.0, 3.0])  # (1 + 3 + 2) / 2
    3.0
    """
    if is_device_array(w):
        raise TypeError("penalty takes host arrays; for torch tensors use wsprox.torch.penalty")
    arr = as_host_array(w)
    resolve_dtypes(arr.dtype)
    ax = normalize_axis(axis, arr.ndim)
    check_finite(arr)
    rows, moved_shape = _as_rows(arr, ax)
    n, d = rows.shape
    if d <= 1:
        values = np.zeros(n)
    else:
        # a C-contiguous copy, so that the summation order (and the result, to the bit) does not
        # depend on the input's memory layout
        xs = np.sort(np.array(rows, dtype=np.float64, order="C"), axis=1)
        xs -= xs[:, d // 2 : d // 2 + 1]
        coef = (2.0 * np.arange(d) - (d - 1)) / (d - 1)
        with np.errstate(under="ignore"):  # subnormal weights; np.seterr(under="raise") must not matter
            values = xs @ coef
    if ax is None:
        return float(values[0])
    return values.reshape(moved_shape[:-1])


def labels_from_values(x: np.ndarray) -> np.ndarray:
    """Cluster ids of a 2-D array: per row, distinct values numbered 0..K-1 in increasing order."""
    n, d = x.shape
    if d == 0:
        return np.zeros((n, d), np.int64)
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    starts = np.zeros((n, d), np.int64)
    starts[:, 1:] = xs[:, 1:] != xs[:, :-1]
    labels = np.empty((n, d), np.int64)
    np.put_along_axis(labels, order, np.cumsum(starts, axis=1), axis=1)
    return labels


def _soft_threshold(a: np.ndarray, l1: float) -> np.ndarray:
    """``sign(a) max(|a| - l1, 0)`` computed in float64, cast back; zeros are +0.0."""
    a64 = a.astype(np.float64)
    shrunk = np.maximum(np.abs(a64) - l1, 0.0)
    return (np.copysign(shrunk, a64) + 0.0).astype(a.dtype)


def _dense_in_memory(arr: np.ndarray) -> bool:
    """True if ``arr``'s elements fill one block of memory, in some order of its axes.

    Then ``arr.ravel(order="K")`` is a view, and ``np.empty_like(arr).ravel(order="K")``
    lists the elements in the same order. Broadcast (stride-0) and sliced arrays are not.
    """
    axes = sorted((abs(stride), size) for size, stride in zip(arr.shape, arr.strides) if size > 1)
    expected = arr.itemsize
    for stride, size in axes:
        if stride != expected:
            return False
        expected *= size
    return True


def _as_rows(arr: np.ndarray, axis: int | None) -> tuple[np.ndarray, tuple]:
    """View (or copy) ``arr`` as a 2-D ``(n_problems, d)`` array; also return the moved shape.

    With ``axis=None`` a dense array (see :func:`_dense_in_memory`) is taken in memory
    order, so a transposed or otherwise permuted array is used without a copy: the whole
    array is one problem and the prox commutes with permutations. Other arrays are taken
    in C order.
    """
    if axis is None:
        flat = arr.ravel(order="K") if _dense_in_memory(arr) else arr.reshape(-1)
        return flat.reshape(1, arr.size), (1, arr.size)
    moved = np.moveaxis(arr, axis, -1)
    n = int(np.prod(moved.shape[:-1]))
    return moved.reshape(n, arr.shape[axis]), moved.shape


def _from_rows(x: np.ndarray, moved_shape: tuple, axis: int | None, like: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_as_rows`: an array shaped like ``like``.

    With ``axis=None`` and a dense ``like`` the result has ``like``'s memory layout, filled
    in memory order (the order :func:`_as_rows` read it in); otherwise it is C-contiguous.
    """
    if axis is None:
        if like.flags.c_contiguous or not _dense_in_memory(like):
            return x.reshape(like.shape)
        result = np.empty_like(like, dtype=x.dtype)
        flat = result.ravel(order="K")
        if not np.shares_memory(flat, result):
            raise AssertionError("internal error: ravel(order='K') of empty_like copied")
        flat[...] = x.reshape(-1)
        return result
    return np.ascontiguousarray(np.moveaxis(x.reshape(moved_shape), -1, axis))


def _check_backend_result(name, x, labels, rows, return_clusters) -> None:
    """Catch a (user-registered) backend that breaks its contract before its result is used."""
    if not isinstance(x, np.ndarray) or x.shape != rows.shape or x.dtype != rows.dtype:
        raise RuntimeError(
            f"backend {name!r} returned {type(x).__name__} "
            f"{getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}, expected {rows.dtype} array of shape {rows.shape}"
        )
    if (
        return_clusters
        and labels is not None
        and (not isinstance(labels, np.ndarray) or labels.shape != rows.shape or labels.dtype.kind not in "iu")
    ):
        raise RuntimeError(f"backend {name!r} returned labels that are not an integer array of shape {rows.shape}")
