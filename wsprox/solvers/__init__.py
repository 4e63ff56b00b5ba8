"""Built-in solver backends. Importing this package registers them.

Each backend lives in its own private module; nothing heavy (numba compilation, cvxpy,
numba-cuda) is imported until a backend is used or its availability is asked for.
"""

import importlib.util

from .._registry import register_backend


def _numba_solve(w, lam, l1, return_clusters):
    from .numba_backend import solve

    return solve(w, lam, l1, return_clusters)


def _cvxpy_solve(w, lam, l1, return_clusters):
    from .cvxpy_backend import solve

    return solve(w, lam, l1, return_clusters)


def _cvxpy_availability():
    if importlib.util.find_spec("cvxpy") is None:
        return False, "cvxpy is not installed: pip install 'wsprox[cvxpy]' (or pip install cvxpy)"
    return True, None


def _cuda_solve(w, lam, l1, return_clusters):
    from .cuda_backend import solve

    return solve(w, lam, l1, return_clusters)


def _cuda_imminent_solve(w, lam, l1, return_clusters):
    from .cuda_imminent import solve

    return solve(w, lam, l1, return_clusters)


def _cuda_availability():
    if importlib.util.find_spec("numba") is None:
        return False, "numba-cuda is not installed: pip install 'wsprox[cuda]'"
    from .cuda_backend import availability

    return availability()


register_backend(
    "numba",
    _numba_solve,
    description=(
        "CPU: sort of packed keys (own radix sort or numpy's, the faster here) + pool adjacent violators "
        "in float64, rows in parallel (numba)"
    ),
    array_kinds=("numpy",),
    dtypes=("float32", "float64"),
    batched=True,
    max_size=2**32 - 1,
    max_size_reason="its sort packs each element's position into 32 bits",
)
register_backend(
    "cvxpy",
    _cvxpy_solve,
    description="ground truth: the pairwise-difference QP solved by cvxpy/Clarabel at tight tolerance",
    availability=_cvxpy_availability,
    array_kinds=("numpy",),
    dtypes=("float64",),
    batched=False,
    max_size=1000,
    max_size_reason=(
        "the quadratic program has O(d**2) variables and constraints; d = 1000 took 28-72 s and 1.4 GB"
        " on a 2-core machine"
    ),
)
register_backend(
    "cuda",
    _cuda_solve,
    description="NVIDIA GPU: parallel collision algorithm, O(d) work, polylog depth (numba-cuda)",
    availability=_cuda_availability,
    array_kinds=("numpy", "cuda"),
    dtypes=("float32", "float64"),
    batched=True,
)
register_backend(
    "cuda-imminent",
    _cuda_imminent_solve,
    description="NVIDIA GPU baseline: the paper's imminent collisions (data-dependent rounds, up to d - 1)",
    availability=_cuda_availability,
    array_kinds=("numpy", "cuda"),
    dtypes=("float32", "float64"),
    batched=True,
)
