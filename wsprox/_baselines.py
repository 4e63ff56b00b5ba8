"""External baselines of ``wsprox compare``: the pipelines users would write with other libraries.

They are not wsprox backends (they are never registered and ``wsprox.prox`` cannot use
them); ``wsprox compare`` times and checks them next to the backends, labelled
"(external)", when their library is installed. Each one computes the prox of one vector
through the reduction of design/math.md: with ``x = sort(w)`` and velocities
``v_k = lam (d - 1 - 2k)/(d - 1)``, ``prox(w) = unsort(isotonic_increasing(x + v))``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Baseline", "BASELINES", "available_baselines"]


@dataclass(frozen=True)
class Baseline:
    """One external baseline.

    Attributes
    ----------
    name : str
        The name given to ``--backends``.
    label : str
        How tables and plots call it.
    description : str
        One line saying what it computes.
    requires : tuple of str
        Importable modules it needs (checked with ``importlib.util.find_spec``, without importing).
    make : callable
        ``make() -> solve``, with ``solve(w, lam) -> x`` for a contiguous 1-D float32/float64
        numpy array ``w`` (``x`` of ``w``'s shape and dtype). ``make`` imports the library and
        may check the baseline against wsprox before it is trusted (raising if it disagrees).
    """

    name: str
    label: str
    description: str
    requires: tuple[str, ...]
    make: Callable[[], Callable[[np.ndarray, float], np.ndarray]]

    def availability(self) -> tuple[bool, str | None]:
        """``(True, None)`` when every required module is installed, else ``(False, reason)``."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return False, f"{module} is not installed"
        return True, None


def _velocities(d: int, lam: float) -> np.ndarray:
    return lam * (d - 1 - 2 * np.arange(d, dtype=np.float64)) / max(d - 1, 1)


def _pipeline(isotonic: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, float], np.ndarray]:
    """sort (stable) + ``isotonic`` of ``x + v`` in float64 + unsort, cast back to ``w``'s dtype."""

    def solve(w: np.ndarray, lam: float) -> np.ndarray:
        w64 = np.asarray(w, dtype=np.float64)
        order = np.argsort(w64, kind="stable")
        z = w64[order] + _velocities(w64.size, lam)
        x = np.empty_like(w64)
        x[order] = isotonic(z)
        return x.astype(w.dtype, copy=False)

    return solve


def _make_scipy():
    from scipy.optimize import isotonic_regression

    return _pipeline(lambda z: isotonic_regression(z).x)


def _make_sklearn():
    from sklearn.isotonic import isotonic_regression

    return _pipeline(lambda z: isotonic_regression(z, increasing=True))


def _make_torchsort():
    """The soft-rank identity, with the rank convention checked against the numba backend first.

    ``prox(w) = w - a * r + lam (d + 1)/(d - 1)`` with ``a = 2 lam/(d - 1)`` and ``r`` the L2
    soft rank of strength ``a`` in the ascending convention (ranks 1..d, the largest entry
    ranked d). If torchsort ranks the other way, ``r = d + 1 - soft_rank``.
    """
    import torch
    import torchsort

    import wsprox

    def identity(w: np.ndarray, lam: float, flip: bool) -> np.ndarray:
        d = w.size
        a = 2.0 * lam / (d - 1)
        values = torch.from_numpy(np.ascontiguousarray(w)).reshape(1, d)
        with torch.no_grad():
            ranks = torchsort.soft_rank(values, regularization="l2", regularization_strength=a)
        r = np.asarray(ranks.reshape(d).cpu().numpy(), dtype=np.float64)
        if flip:
            r = (d + 1) - r
        x = np.asarray(w, dtype=np.float64) - a * r + lam * (d + 1) / (d - 1)
        return x.astype(w.dtype, copy=False)

    w = np.random.default_rng(7).standard_normal(40)
    lam = 0.3
    expected = wsprox.prox(w, lam, backend="numba")
    errors = {flip: float(np.max(np.abs(identity(w, lam, flip) - expected))) for flip in (False, True)}
    flip = min(errors, key=errors.get)
    if errors[flip] > 1e-6:
        raise RuntimeError(
            "torchsort.soft_rank matches the numba prox in neither rank convention "
            f"(max differences {errors[False]:.3g} ascending, {errors[True]:.3g} descending)"
        )
    return lambda w, lam: identity(w, lam, flip)


#: Every external baseline, by name.
BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline(
            "scipy",
            "scipy pipeline (external)",
            "sort + scipy.optimize.isotonic_regression (float64) + unsort",
            ("scipy", "scipy.optimize._isotonic"),  # the second: scipy >= 1.12
            _make_scipy,
        ),
        Baseline(
            "sklearn",
            "sklearn pipeline (external)",
            "sort + sklearn.isotonic.isotonic_regression (cast to float64) + unsort",
            ("sklearn",),
            _make_sklearn,
        ),
        Baseline(
            "torchsort",
            "torchsort soft_rank (external)",
            "w - a*soft_rank(w, l2, strength a) + lam(d+1)/(d-1), a = 2 lam/(d-1) (torchsort, CPU)",
            ("torch", "torchsort"),
            _make_torchsort,
        ),
    )
}


def available_baselines() -> dict[str, tuple[bool, str | None]]:
    """``{name: (available, reason)}`` for every external baseline, without importing any library."""
    return {name: b.availability() for name, b in BASELINES.items()}
