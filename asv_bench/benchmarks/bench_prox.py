"""Speed, memory and accuracy of ``wsprox.prox`` for every backend x size x family x dtype.

Data are built in ``setup``; backends or cases that cannot run here are skipped by raising
NotImplementedError in ``setup`` (the message says why). What runs here is probed once, in
``setup_cache`` (shared by all classes), not in every parameter combination. ``setup`` also
calls the prox once, so numba's compilation (or its loading from the on-disk cache, see
NUMBA_CACHE_DIR) and first-touch page faults are never measured.
"""

from __future__ import annotations

import numpy as np

import wsprox

from ._common import (
    BACKENDS,
    BATCH_LAM,
    BATCH_SHAPE,
    DTYPES,
    FAMILIES,
    SIZES,
    as_host,
    is_gpu_backend,
    make_batch,
    make_input,
    probe_backends,
    prox_callable,
    reference,
    require_backend,
)

_GPU_MEMORY = "host peak RSS says nothing about device memory (see asv_bench/bench_cuda.py)"


class _Backends:
    """Mixin: ``setup_cache`` returns ``wsprox.backends()`` (one probe for the whole suite)."""

    timeout = 180

    def setup_cache(self):
        return probe_backends()


class Prox(_Backends):
    """Time of one ``wsprox.prox(w, lam, backend=...)`` call on a 1-D problem of size d.

    GPU backends work on a device copy of ``w``; the time includes a synchronize but no
    host<->device copies.
    """

    params = [BACKENDS, SIZES, FAMILIES, DTYPES]
    param_names = ["backend", "d", "family", "dtype"]

    def setup(self, infos, backend, d, family, dtype):
        info = require_backend(infos, backend, d, dtype)
        w, lam = make_input(family, d, dtype)
        self.run = prox_callable(info, w, lam)
        self.run()  # warm-up: numba compilation / cache load, first-touch allocations

    def time_prox(self, infos, backend, d, family, dtype):
        self.run()


class ProxMemory(_Backends):
    """Peak resident memory of the process around one prox call (host backends only).

    asv reports the process's maximum RSS, so the interpreter, numpy, numba and the input
    are included: compare values across d or commits, not with the size of ``w``.
    """

    params = [BACKENDS, SIZES, FAMILIES, DTYPES]
    param_names = ["backend", "d", "family", "dtype"]

    def setup(self, infos, backend, d, family, dtype):
        info = require_backend(infos, backend, d, dtype)
        if is_gpu_backend(info):
            raise NotImplementedError(_GPU_MEMORY)
        self.w, self.lam = make_input(family, d, dtype)
        wsprox.prox(self.w[:16].copy(), self.lam, backend=backend)  # load the kernels on a tiny copy

    def peakmem_prox(self, infos, backend, d, family, dtype):
        wsprox.prox(self.w, self.lam, backend=backend)


class Accuracy(_Backends):
    """Accuracy of the prox: error against a reference, and the optimality certificate.

    ``track_error``: max |x - reference| (absolute). The reference is computed in float64 by
    cvxpy (the ground truth) where d <= 200, else by the numba backend in float64, or by the
    independent scipy pipeline (sort + isotonic_regression) where that would compare a solver
    with itself (see ``_common.reference``).

    ``track_certificate_violation``: ``wsprox.certify(w, x, lam).max_violation``, the largest
    violation of the optimality (KKT) conditions in units of the tolerance (0 is exact, <= 1
    passes).
    """

    params = [BACKENDS, SIZES, FAMILIES, DTYPES]
    param_names = ["backend", "d", "family", "dtype"]
    timeout = 300

    def setup(self, infos, backend, d, family, dtype):
        info = require_backend(infos, backend, d, dtype)
        self.w, self.lam = make_input(family, d, dtype)
        self.x = as_host(prox_callable(info, self.w, self.lam)())
        self.ref, self.ref_name = reference(infos, backend, dtype, self.w, self.lam)

    def track_error(self, infos, backend, d, family, dtype):
        return float(np.max(np.abs(self.x.astype(np.float64) - self.ref)))

    track_error.unit = "max abs error"

    def track_certificate_violation(self, infos, backend, d, family, dtype):
        return float(wsprox.certify(self.w, self.x, self.lam).max_violation)

    track_certificate_violation.unit = "tolerances"


class Batched(_Backends):
    """A batch of 1000 independent Gaussian problems of d = 1000 (``axis=1``), lam = 1e-2."""

    params = [["numba", "cuda", "cuda-imminent"], DTYPES]
    param_names = ["backend", "dtype"]

    def setup(self, infos, backend, dtype):
        info = require_backend(infos, backend, BATCH_SHAPE[1], dtype)
        self.w = make_batch(dtype)
        self.run = prox_callable(info, self.w, BATCH_LAM, axis=1)
        self.run()  # warm-up

    def time_prox_batched(self, infos, backend, dtype):
        self.run()


class BatchedMemory(_Backends):
    """Peak resident memory of the process around the batched prox (host backends only)."""

    params = [["numba", "cuda", "cuda-imminent"], DTYPES]
    param_names = ["backend", "dtype"]

    def setup(self, infos, backend, dtype):
        info = require_backend(infos, backend, BATCH_SHAPE[1], dtype)
        if is_gpu_backend(info):
            raise NotImplementedError(_GPU_MEMORY)
        self.w = make_batch(dtype)
        wsprox.prox(self.w[:2, :16].copy(), BATCH_LAM, axis=1, backend=backend)  # load the kernels

    def peakmem_prox_batched(self, infos, backend, dtype):
        wsprox.prox(self.w, BATCH_LAM, axis=1, backend=backend)
