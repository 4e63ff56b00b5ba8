"""The solver registry: what each backend is, whether it runs here, and how to call it.

A backend is a function ``solve(w, lam, l1, return_clusters) -> (x, labels)`` that
solves every row of a 2-D array independently. The public layer (:mod:`wsprox._api`)
validates, reshapes and converts inputs before a backend sees them, so a backend only
has to be correct on its documented inputs (see :func:`register_backend`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BackendInfo", "backends", "register_backend", "get_backend"]


@dataclass(frozen=True)
class BackendInfo:
    """Description of one registered backend, as returned by :func:`wsprox.backends`.

    Attributes
    ----------
    name : str
        The name passed as ``backend=`` to :func:`wsprox.prox`.
    available : bool
        Whether the backend can run in this process.
    reason : str or None
        Why it cannot run and what to install, when ``available`` is False.
    array_kinds : tuple of str
        The array kinds it accepts: ``"numpy"`` (host arrays) and/or ``"cuda"``
        (device arrays exposing ``__cuda_array_interface__``).
    dtypes : tuple of str
        The compute dtypes it accepts (inputs of other dtypes are converted first).
    batched : bool
        True if it solves the rows of a batch in parallel, False if it loops.
    max_size : int or None
        Largest problem size ``d`` it accepts (None: no limit beyond memory).
    description : str
        One line saying what it is.
    """

    name: str
    available: bool
    reason: str | None
    array_kinds: tuple[str, ...]
    dtypes: tuple[str, ...]
    batched: bool
    max_size: int | None
    description: str


@dataclass
class _Backend:
    name: str
    solve: Callable | None
    availability: Callable[[], tuple[bool, str | None]]
    array_kinds: tuple[str, ...]
    dtypes: tuple[str, ...]
    batched: bool
    max_size: int | None
    description: str
    max_size_reason: str | None = None
    _checked: tuple[bool, str | None] | None = None

    def check_size(self, d: int) -> None:
        """Raise the API's ValueError if problems of size ``d`` are beyond :attr:`max_size`."""
        if self.max_size is not None and d > self.max_size:
            why = f": {self.max_size_reason}" if self.max_size_reason else ""
            raise ValueError(
                f"w: problem size d={d} is too large for backend {self.name!r} (at most {self.max_size}{why})"
            )

    def check(self) -> tuple[bool, str | None]:
        if self._checked is None:
            try:
                ok, reason = self.availability()
            except Exception as exc:  # an availability probe must never break the registry
                ok, reason = False, f"availability check failed: {exc!r}"
            self._checked = (bool(ok), None if ok else str(reason))
        return self._checked

    def info(self) -> BackendInfo:
        ok, reason = self.check()
        return BackendInfo(
            name=self.name,
            available=ok,
            reason=reason,
            array_kinds=self.array_kinds,
            dtypes=self.dtypes,
            batched=self.batched,
            max_size=self.max_size,
            description=self.description,
        )


_REGISTRY: dict[str, _Backend] = {}
_LOCK = threading.Lock()
_ARRAY_KINDS = ("numpy", "cuda")
_DTYPES = ("float32", "float64")


def _always_available() -> tuple[bool, str | None]:
    return True, None


def register_backend(
    name: str,
    solve: Callable,
    *,
    description: str,
    availability: Callable[[], tuple[bool, str | None]] | None = None,
    array_kinds: tuple[str, ...] = ("numpy",),
    dtypes: tuple[str, ...] = _DTYPES,
    batched: bool = False,
    max_size: int | None = None,
    max_size_reason: str | None = None,
    replace: bool = False,
) -> None:
    """Register a solver so that ``wsprox.prox(..., backend=name)`` can use it.

    Parameters
    ----------
    name : str
        Name of the backend; must not be ``"auto"``.
    solve : callable
        ``solve(w, lam, l1, return_clusters) -> (x, labels)``. ``w`` is a 2-D array of
        shape ``(n_problems, d)`` with ``n_problems >= 1`` and ``d >= 1``, of one of
        ``dtypes``, finite, possibly non-contiguous, and must not be modified. ``lam``
        and ``l1`` are finite Python floats ``>= 0``. Each row is an independent problem.
        Return ``x``, a new array of ``w``'s shape and dtype holding the prox of every
        row, and ``labels`` (int64, same shape; cluster ids ``0..K-1`` in increasing
        order of value per row) if ``return_clusters`` is true, else None.
    description : str
        One line saying what the backend is.
    availability : callable, optional
        Returns ``(ok, reason)``; called once, lazily. ``reason`` should say what to
        install. Default: always available.
    array_kinds : tuple of str, optional
        Subset of ``("numpy", "cuda")``. Default ``("numpy",)``.
    dtypes : tuple of str, optional
        Compute dtypes accepted, a subset of ``("float32", "float64")``. Inputs of an
        accepted dtype are passed unchanged (float16 is passed as float32 when float32 is
        accepted); others are converted to float64 if it is accepted, else to float32.
        The result is cast back to the output dtype of :func:`wsprox.prox`.
    batched : bool, optional
        Whether the solver processes the rows of a batch in parallel.
    max_size : int, optional
        Largest ``d`` the solver accepts. Larger problems raise ValueError before
        the solver is called.
    max_size_reason : str, optional
        Why ``max_size`` is the limit, appended to that error's message.
    replace : bool, optional
        Allow replacing an already registered backend of the same name.

    Raises
    ------
    ValueError
        If the name is taken (and ``replace`` is false), is ``"auto"`` (reserved), or an
        option is invalid.
    TypeError
        If ``name`` is not a non-empty str, or ``solve`` or ``availability`` is not
        callable.

    Examples
    --------
    >>> import numpy as np, wsprox
    >>> def mean_only(w, lam, l1, return_clusters):  # correct only for huge lam
    ...     x = np.repeat(w.mean(axis=1, keepdims=True), w.shape[1], axis=1)
    ...     return x, (np.zeros(w.shape, np.int64) if return_clusters else None)
    >>> wsprox.register_backend("toy", mean_only, description="a toy")
    >>> wsprox.prox(np.array([1.0, 3.0]), 100.0, backend="toy")
    array([2., 2.])
    >>> wsprox.unregister_backend("toy")
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"backend name must be a non-empty str, got {name!r}")
    if name == "auto":
        raise ValueError("backend name 'auto' is reserved")
    if not callable(solve):
        raise TypeError(f"solve must be callable, got {type(solve).__name__}")
    if availability is not None and not callable(availability):
        raise TypeError(f"availability must be callable, got {type(availability).__name__}")
    array_kinds = tuple(array_kinds)
    dtypes = tuple(dtypes)
    if not array_kinds or any(k not in _ARRAY_KINDS for k in array_kinds):
        raise ValueError(f"array_kinds must be a non-empty subset of {_ARRAY_KINDS}, got {array_kinds}")
    if not dtypes or any(t not in _DTYPES for t in dtypes):
        raise ValueError(f"dtypes must be a non-empty subset of {_DTYPES}, got {dtypes}")
    if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
        raise ValueError(f"max_size must be a positive int or None, got {max_size!r}")
    if not isinstance(description, str) or not description:
        raise ValueError("description must be a non-empty str")
    if max_size_reason is not None and (max_size is None or not isinstance(max_size_reason, str)):
        raise ValueError("max_size_reason must be a str, and given only with max_size")
    backend = _Backend(
        name=name,
        solve=solve,
        availability=availability or _always_available,
        array_kinds=array_kinds,
        dtypes=dtypes,
        batched=bool(batched),
        max_size=max_size,
        description=description,
        max_size_reason=max_size_reason,
    )
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"a backend named {name!r} is already registered (pass replace=True to replace it)")
        _REGISTRY[name] = backend


def unregister_backend(name: str) -> None:
    """Remove a registered backend.

    Parameters
    ----------
    name : str
        The name it was registered under (built-in backends can be removed too, for
        the rest of the process).

    Raises
    ------
    ValueError
        If no backend of that name is registered.
    """
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"unknown backend {name!r}; registered: {', '.join(_REGISTRY)}")
        del _REGISTRY[name]


def backends() -> dict[str, BackendInfo]:
    """Describe every registered backend.

    Returns
    -------
    dict of str to BackendInfo
        In registration order. ``info.available`` says whether the backend runs here
        and ``info.reason`` why not.

    Examples
    --------
    >>> import wsprox
    >>> info = wsprox.backends()["numba"]
    >>> info.available, info.array_kinds
    (True, ('numpy',))
    """
    with _LOCK:
        entries = list(_REGISTRY.values())
    return {b.name: b.info() for b in entries}


def get_backend(name: str) -> _Backend:
    """Return the registered, available backend ``name`` or raise a ValueError saying why not."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    with _LOCK:
        backend = _REGISTRY.get(name)
        known = list(_REGISTRY)
    if backend is None:
        raise ValueError(f"unknown backend {name!r}; registered backends: {', '.join(['auto', *known])}")
    ok, reason = backend.check()
    if not ok:
        raise ValueError(f"backend {name!r} is not available here: {reason}")
    return backend
