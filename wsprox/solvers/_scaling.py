"""Exact power-of-two scaling against overflow, shared by the numba kernels, the cuda kernels and the prototype.

Written in plain arithmetic so that the same source runs as Python and compiles with
``numba.njit`` and ``numba.cuda.jit(device=True)``.
"""


def overflow_unit(largest, d):
    """The power of two ``unit`` (1.0 unless ``largest`` is huge) in which a row's pooling tests stay finite.

    Parameters
    ----------
    largest : float
        The largest of ``max |x|`` over the row and the strengths that enter the
        products (finite, ``>= 0``).
    d : int
        Length of the row, ``>= 1``.

    Returns
    -------
    float
        ``2**(-32 k)`` for the smallest ``k >= 0`` with ``largest * unit <= 1e300 / (8 d**3)``.

    Notes
    -----
    The pooling test of two adjacent blocks multiplies sums of up to ``d`` values by
    counts up to ``d`` and by ``d - 1``: about ``8 d**3 max(|x|, lam)`` in all. A row
    whose values or strengths come near the float64 limit is solved in units of
    ``1 / unit``. Multiplying by a power of two is exact (values below about ``1e-300``
    times ``unit`` lose bits as subnormals, far below the accuracy of such a row), and the
    prox is positively homogeneous, ``prox_{s lam R + s l1 |.|}(s w) = s prox_{lam R + l1
    |.|}(w)`` for ``s > 0``, so the scaled problem has the scaled solution.
    """
    safe = 1e300 / (8.0 * float(d) ** 3)
    unit = 1.0
    while largest * unit > safe:
        unit *= 2.0**-32
    return unit
