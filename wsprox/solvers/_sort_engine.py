"""Which sort the CPU backend uses for the packed keys: its own radix sort or numpy's.

Both sort the same packed keys (order-preserving key bits high, the element's index
low; see :mod:`._sorting`). Every key is distinct, so every correct sort gives the
same sorted keys, and the prox is bit-identical whichever sort ran. Only speed differs,
and it differs by machine: numpy's ``np.sort`` of uint64 is vectorized (x86-simd-sort,
numpy >= 2.0) and about twice as fast as the radix sort on CPUs with AVX-512, while on
others the radix sort is faster.

So the engine is measured, once per process and per row-length class (short rows, the
radix sort's 8-bit digits, and long rows, its 11-bit digits), on a fixed synthetic
problem of a few milliseconds. The environment variable ``WSPROX_SORT`` (``radix``,
``numpy`` or ``auto``, the default) overrides the choice.
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
#: Problems timed to choose: (rows, row length) for short rows and for long rows.
CALIBRATION_SHAPES = {"short": (64, 1000), "long": (1, 1 << 18)}
#: Timed runs of each engine (alternating; the fastest run counts).
CALIBRATION_RUNS = 5

_chosen: dict[str, str] = {}
_lock = threading.Lock()


def size_class(d: int) -> str:
    """``"short"`` for rows the radix sort handles with 8-bit digits, else ``"long"``."""
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
    """Time both engines on packed keys of an ``(n, d)`` Gaussian problem; return the faster."""
    import numba

    from ._numba_kernels import pack_rows
    from ._sorting import packed_radix_sort

    if numba.config.DISABLE_JIT:
        return "numpy"  # the radix sort runs as plain Python: no contest
    w = np.random.default_rng(0).standard_normal((n, d))
    keys = np.empty((n, d), np.uint64)
    pack_rows(w, 0, n, keys)
    work = np.empty((n, d), np.uint64)
    scratch = np.empty(d, np.uint64)

    def radix():
        for r in range(n):
            packed_radix_sort(work[r], scratch)

    def numpy_sort():
        work.sort(axis=1)

    best = {"radix": np.inf, "numpy": np.inf}
    for _ in range(CALIBRATION_RUNS + 1):  # the first round warms up (compilation, page faults)
        for name, run in (("radix", radix), ("numpy", numpy_sort)):
            np.copyto(work, keys)
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return min(ENGINES, key=best.__getitem__)
