"""Which sort the CPU backend uses for the packed keys: its own radix sort or numpy's.

Both sort the same packed keys (order-preserving key bits high, the element's index
low; see :mod:`._sorting`). Every key is distinct, so every correct sort gives the
same sorted keys, and the prox is bit-identical whichever sort ran. Only speed differs,
and it differs by machine: numpy's ``np.sort`` of uint64 is vectorized (x86-simd-sort,
numpy >= 2.0) and about twice as fast as the radix sort on CPUs with AVX-512, while on
others the radix sort is faster.

So the engine is measured, once per process and per row-length class, by solving a
fixed synthetic problem with each (about 10 ms for short rows and 60 ms for long ones, at
the first call that needs the class). The classes follow what changes inside the
engines: rows of at most ``NARROW_MAX`` elements (numpy sorts narrow uint32 keys), of at
most ``SMALL_ROW`` (the radix sort's 8-bit digits) and longer rows. The environment
variable ``WSPROX_SORT`` (``radix``, ``numpy`` or ``auto``, the default) overrides the
choice.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from ._sorting import SMALL_ROW

ENGINES = ("radix", "numpy")
#: Environment variable that forces an engine.
ENV_VAR = "WSPROX_SORT"
#: With numpy's sort, rows up to this length are sorted on narrow (uint32) keys, coarse
#: key bits above the index bits, which numpy sorts about twice as fast as uint64 keys;
#: the few ties of the coarse keys are then ordered exactly (see ``_sorting``).
NARROW_MAX = 1024
#: Problems solved to choose, (rows, row length), for each size class.
CALIBRATION_SHAPES = {"narrow": (64, 1000), "short": (16, 4000), "long": (1, 1 << 18)}
#: Timed runs of each engine (alternating; the fastest run counts).
CALIBRATION_RUNS = 4

_chosen: dict[str, str] = {}
_lock = threading.Lock()


def _new_lock_after_fork():
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def size_class(d: int) -> str:
    """``"narrow"``, ``"short"`` or ``"long"``: the class of rows of length ``d`` (see above)."""
    if d <= NARROW_MAX:
        return "narrow"
    return "short" if d <= SMALL_ROW else "long"


def sort_engine(d: int) -> str:
    """The engine (``"radix"`` or ``"numpy"``) for rows of length ``d``.

    Raises
    ------
    ValueError
        If ``WSPROX_SORT`` is set to something else than ``radix``, ``numpy`` or ``auto``.
    """
    forced = os.environ.get(ENV_VAR, "auto").strip().lower()
    if forced in ENGINES:
        return forced
    if forced not in ("", "auto"):
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of 'radix', 'numpy', 'auto'")
    key = size_class(d)
    engine = _chosen.get(key)
    if engine is None:
        with _lock:
            engine = _chosen.get(key)
            if engine is None:
                engine = _chosen[key] = _calibrate(*CALIBRATION_SHAPES[key])
    return engine


def calibration() -> dict[str, str]:
    """The engines chosen so far in this process, by size class (empty before the first solve)."""
    return dict(_chosen)


def _calibrate(n: int, d: int) -> str:
    """Solve an ``(n, d)`` Gaussian problem with both engines; return the faster."""
    import numba

    from .numba_backend import _solve_numpy_sort, _solve_radix_sort

    if numba.config.DISABLE_JIT:
        return "numpy"  # the radix sort runs as plain Python: no contest
    w = np.random.default_rng(0).standard_normal((n, d))
    out = np.empty_like(w)
    labels = np.empty((n, 0), np.int64)
    solvers = {"radix": _solve_radix_sort, "numpy": _solve_numpy_sort}
    best = dict.fromkeys(ENGINES, np.inf)
    for _ in range(CALIBRATION_RUNS + 1):  # the first round also compiles and touches the buffers
        for name in ENGINES:
            start = time.perf_counter()
            solvers[name](w, 1e-2, 0.0, out, labels, False, 0, n)
            best[name] = min(best[name], time.perf_counter() - start)
    return min(ENGINES, key=best.__getitem__)
