"""Baselines on the same inputs as ``bench_prox``, so that ratios can be read off the dashboard.

- ``np.argsort`` of the same array: the floor (the prox sorts once, then runs in O(d));
- the scipy pipeline: sort + ``scipy.optimize.isotonic_regression`` + unsort, in float64;
- for the batched case, ``np.argsort(axis=1)`` and a Python loop of the scipy pipeline per row.
"""

from __future__ import annotations

import numpy as np

from ._common import BATCH_LAM, DTYPES, FAMILIES, SIZES, make_batch, make_input, scipy_pipeline

_BASELINE_SIZES = [d for d in SIZES if d >= 1_000]


def _require_scipy():
    try:
        from scipy.optimize import isotonic_regression  # noqa: F401
    except ImportError as exc:
        raise NotImplementedError(f"scipy >= 1.12 (isotonic_regression) not installed: {exc}") from None


class Argsort:
    """``np.argsort(w)`` (numpy's default quicksort/introsort) of the prox benchmarks' input."""

    params = [_BASELINE_SIZES, FAMILIES, DTYPES]
    param_names = ["d", "family", "dtype"]

    def setup(self, d, family, dtype):
        self.w, _ = make_input(family, d, dtype)
        np.argsort(self.w)

    def time_argsort(self, d, family, dtype):
        np.argsort(self.w)


class ScipyPipeline:
    """The prox computed by sorting, ``scipy.optimize.isotonic_regression`` and unsorting (float64)."""

    params = [_BASELINE_SIZES, FAMILIES]
    param_names = ["d", "family"]
    timeout = 180

    def setup(self, d, family):
        _require_scipy()
        self.w, self.lam = make_input(family, d, "float64")
        scipy_pipeline(self.w, self.lam)

    def time_scipy_pipeline(self, d, family):
        scipy_pipeline(self.w, self.lam)


class BatchedBaselines:
    """Baselines of the batched benchmark (1000 x 1000 Gaussian, axis=1)."""

    params = [DTYPES]
    param_names = ["dtype"]
    timeout = 180

    def setup(self, dtype):
        self.w = make_batch(dtype)

    def time_argsort_rows(self, dtype):
        np.argsort(self.w, axis=1)

    def time_scipy_loop(self, dtype):
        for row in self.w:
            scipy_pipeline(row, BATCH_LAM)
