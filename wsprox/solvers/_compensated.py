"""Double-double (compensated) addition, shared by the cuda prototype and the kernels.

Written in plain arithmetic so that the same source runs as Python and, compiled with
``numba.cuda.jit(device=True)``, on the GPU.
"""


def dd_add(a_hi, a_lo, b_hi, b_lo):
    """The sum of the double-double numbers ``a_hi + a_lo`` and ``b_hi + b_lo``, as ``(hi, lo)``.

    Notes
    -----
    Knuth's TwoSum gives ``s = fl(a_hi + b_hi)`` and its rounding error ``e`` exactly
    (``s + e = a_hi + b_hi``); the low parts are added to ``e`` and the pair is
    renormalized (``|lo| <= ulp(hi) / 2``). The relative error of the sum is about
    ``2**-104`` unless the two numbers nearly cancel (the "sloppy" double-double add),
    which is what a running prefix sum needs: each prefix is exact to about ``2**-104``
    of the sum of the magnitudes before it, so the difference of two prefixes is the sum
    between them up to one float64 rounding of that difference. Assumes round-to-nearest
    and no fused or reassociated additions (the default of numba and of CUDA for adds).
    """
    s = a_hi + b_hi
    bb = s - a_hi
    e = (a_hi - (s - bb)) + (b_hi - bb) + (a_lo + b_lo)
    hi = s + e
    return hi, e - (hi - s)
