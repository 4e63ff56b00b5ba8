"""Shared parameters, input generators, skips and references of the asv benchmarks.

The inputs are those of ``wsprox compare``: the same generators and names
(:mod:`wsprox._families`, design/math.md "Inputs that break naive algorithms"), the same
default strength, sizes and per-family seeds, so that an asv result and a row of
``wsprox compare`` (default ``--lam`` and ``--seed``) are measured on the same vector.
Every generator is deterministic (seeded) and returns ``(w, lam)`` with ``w`` of the
requested dtype.
"""

from __future__ import annotations

import numpy as np

import wsprox
from wsprox import _families
from wsprox._compare import CVXPY_QUICK_MAX_D
from wsprox.cli import DEFAULT_LAM, DEFAULT_SIZES

#: Backends benchmarked; those that cannot run here are skipped in ``setup``.
BACKENDS = ["numba", "cvxpy", "cuda", "cuda-imminent"]
#: Problem sizes d (those of ``wsprox compare``). cvxpy only runs at d <= CVXPY_MAX_D.
SIZES = list(DEFAULT_SIZES)
#: Input families: every family of ``wsprox compare`` (its ``--families all``), by the same names.
FAMILIES = list(_families.FAMILIES)
DTYPES = ["float32", "float64"]

#: Largest d at which cvxpy is benchmarked and used as the reference (as in ``wsprox compare``).
#: Its registry limit (max_size) is 1000, but one d = 1000 solve takes ~30 s and 1.4 GB; d = 200 takes ~0.4 s.
CVXPY_MAX_D = CVXPY_QUICK_MAX_D
#: Strength of the weight-sharing term (the default of ``wsprox compare``; the hard families scale to it).
LAM = DEFAULT_LAM
#: Shape of the batched benchmark (rows x d, solved along axis=1).
BATCH_SHAPE = (1000, 1000)
BATCH_LAM = 1e-2


def make_input(family: str, d: int, dtype: str = "float64", seed: int = 0):
    """Return ``(w, lam)`` for one of :data:`FAMILIES`: the input of ``wsprox compare --seed SEED``.

    ``w`` is contiguous, of ``dtype``; ``lam`` is :data:`LAM`.
    """
    w = _families.make_input(family, d, LAM, dtype, _families.family_seed(family, seed))
    return w, float(LAM)


def make_batch(dtype: str = "float64", seed: int = 1):
    """A Gaussian batch of :data:`BATCH_SHAPE` (one problem per row)."""
    return np.random.default_rng(seed).standard_normal(BATCH_SHAPE).astype(dtype)


def probe_backends():
    """``wsprox.backends()``: what runs here. For the classes' ``setup_cache``.

    Probing runs ``numba.cuda.is_available()`` (about 0.4 s without a GPU, and it initializes
    the driver with one), so it is done once per class in asv's ``setup_cache`` process and
    the result passed to every parameter combination, never in the process asv forks from.
    """
    return wsprox.backends()


def require_backend(infos, name: str, d: int | None = None, dtype: str | None = None):
    """Return ``infos[name]`` or raise NotImplementedError saying why the case is skipped.

    ``infos`` is the result of :func:`probe_backends`.
    """
    info = infos.get(name)
    if info is None:
        raise NotImplementedError(f"backend {name!r} is not registered")
    if not info.available:
        raise NotImplementedError(f"backend {name!r} unavailable: {info.reason}")
    if name == "cvxpy" and d is not None and d > CVXPY_MAX_D:
        raise NotImplementedError(
            f"cvxpy is benchmarked only at d <= {CVXPY_MAX_D} (its QP has O(d^2) terms; d=1000 takes ~30 s)"
        )
    if d is not None and info.max_size is not None and d > info.max_size:
        raise NotImplementedError(f"d={d} exceeds backend {name!r} max_size={info.max_size}")
    if dtype is not None and dtype not in info.dtypes:
        raise NotImplementedError(f"backend {name!r} does not compute in {dtype} (dtypes: {info.dtypes})")
    return info


def is_gpu_backend(info) -> bool:
    """True for backends that take device arrays (``info`` from :func:`probe_backends`)."""
    return "cuda" in info.array_kinds


def to_device(w: np.ndarray):
    """Copy ``w`` to the GPU (numba device array) so the timing excludes host<->device copies."""
    from numba import cuda

    return cuda.to_device(w)


def synchronize() -> None:
    """Wait for the GPU: prox on device arrays is asynchronous on the caller's stream."""
    from numba import cuda

    cuda.synchronize()


def prox_callable(info, w: np.ndarray, lam: float, axis=None):
    """A zero-argument callable running ``wsprox.prox`` once with backend ``info.name``.

    GPU backends work on a device copy of ``w`` made here, and the callable synchronizes, so
    that the time is that of the computation without host<->device copies.
    """
    backend = info.name
    if is_gpu_backend(info):
        w_dev = to_device(w)
        synchronize()

        def run():
            out = wsprox.prox(w_dev, lam, axis=axis, backend=backend)
            synchronize()
            return out

        return run
    return lambda: wsprox.prox(w, lam, axis=axis, backend=backend)


def as_host(x) -> np.ndarray:
    """A numpy copy of a prox result (host or device array)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "get"):  # CuPy
        return x.get()
    if hasattr(x, "cpu"):  # torch
        return x.cpu().numpy()
    return np.asarray(x)


def scipy_pipeline(w: np.ndarray, lam: float) -> np.ndarray:
    """The prox via sort + ``scipy.optimize.isotonic_regression`` + unsort, in float64 (1-D ``w``)."""
    from scipy.optimize import isotonic_regression

    d = w.size
    order = np.argsort(w, kind="stable")
    z = w[order].astype(np.float64) + lam * (d - 1 - 2 * np.arange(d)) / max(d - 1, 1)
    out = np.empty(d)
    out[order] = isotonic_regression(z).x
    return out


def reference(infos, backend: str, dtype: str, w: np.ndarray, lam: float):
    """The float64 reference prox of ``w`` for ``backend`` and the name of the solver that made it.

    cvxpy (the ground truth) where d <= CVXPY_MAX_D, else the float64 numba result; where that
    would compare a solver with itself (cvxpy vs cvxpy, numba float64 vs numba float64) the
    independent scipy pipeline (float64 PAVA) is used instead.
    """
    w64 = w.astype(np.float64)
    d = w64.size
    cvxpy = infos.get("cvxpy")
    if backend != "cvxpy" and cvxpy is not None and cvxpy.available and d <= CVXPY_MAX_D:
        return wsprox.prox(w64, lam, backend="cvxpy"), "cvxpy"
    if not (backend == "numba" and dtype == "float64") and backend != "cvxpy":
        return wsprox.prox(w64, lam, backend="numba"), "numba float64"
    try:
        return scipy_pipeline(w64, lam), "scipy pipeline"
    except ImportError as exc:
        raise NotImplementedError(f"no independent reference for {backend} {dtype}: scipy missing ({exc})") from None
