"""wsprox: the exact, fast proximal mapping of the weight-sharing regularizer.

``R(w) = 1/(d-1) * sum_{i>j} |w_i - w_j|`` (Shakerinava, Sohrabi, Ravanbakhsh,
Lacoste-Julien, "Weight-Sharing Regularization", AISTATS 2024).

Main entry points: :func:`prox`, :func:`penalty`, :func:`backends`,
:func:`register_backend`.
"""

from . import solvers as _builtin_solvers  # noqa: F401  (registers the built-in backends)
from ._api import penalty, prox
from ._certificate import Certificate, certify
from ._registry import BackendInfo, backends, register_backend, unregister_backend
from ._version import __version__

__all__ = [
    "prox",
    "penalty",
    "certify",
    "Certificate",
    "backends",
    "register_backend",
    "unregister_backend",
    "BackendInfo",
    "__version__",
]
